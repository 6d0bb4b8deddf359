//! Integer fields a template may fill: `replicas: 4` or
//! `replicas: "{{ steps.scale-down.outputs.previousReplicas }}"`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An integer, or a `{{ ... }}` template that must read as one once substituted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrTemplate {
    /// A written integer.
    Int(i64),
    /// A template, or the text it became.
    Text(String),
}

impl From<i32> for IntOrTemplate {
    fn from(value: i32) -> Self {
        IntOrTemplate::Int(value.into())
    }
}

impl fmt::Display for IntOrTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrTemplate::Int(i) => write!(f, "{i}"),
            IntOrTemplate::Text(t) => f.write_str(t),
        }
    }
}

impl IntOrTemplate {
    /// The value as an `i32` at least `min`; an error says what the text was and why it does
    /// not fit. Templates must be substituted first.
    pub fn value(&self, min: i32) -> Result<i32, String> {
        let number = match self {
            IntOrTemplate::Int(i) => *i,
            IntOrTemplate::Text(text) => text.trim().parse::<i64>().map_err(|_| {
                if text.contains("{{") {
                    format!(
                        "{:?} still holds a template: only {{{{ params.NAME }}}} and {{{{ steps.STEP.outputs.KEY }}}} of earlier steps are substituted",
                        crate::names::truncate(text, 256)
                    )
                } else {
                    format!(
                        "{:?} is not an integer; check the parameter or output it came from",
                        crate::names::truncate(text, 256)
                    )
                }
            })?,
        };
        let value = i32::try_from(number)
            .map_err(|_| format!("{number} is out of range (at most {})", i32::MAX))?;
        if value < min {
            return Err(format!("{value} is below the minimum {min}"));
        }
        Ok(value)
    }

    /// Whether this is a template still waiting for a value.
    pub fn is_template(&self) -> bool {
        matches!(self, IntOrTemplate::Text(t) if t.contains("{{"))
    }
}

/// Schema: an integer (at least `min`, when given), or a string of at most 1024 bytes that
/// holds a `{{ ... }}` template or the integer text a template became. The bound on the
/// string keeps the CEL rule's estimated cost within the CRD's budget. A string template that
/// does not read as an integer once substituted fails the run with reason InvalidSpec.
pub fn schema(min: Option<i64>) -> schemars::Schema {
    let rule = match min {
        Some(min) => {
            format!("type(self) == int ? self >= {min} : self.matches('{{{{|^ *-?[0-9]+ *$')")
        }
        None => "type(self) == int || self.matches('{{|^ *-?[0-9]+ *$')".to_owned(),
    };
    let message = match min {
        Some(min) => format!("must be an integer of at least {min}, or a {{{{ ... }}}} template"),
        None => "must be an integer or a {{ ... }} template".to_owned(),
    };
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "maxLength": 1024,
        "x-kubernetes-validations": [{"rule": rule, "message": message}]
    })
}

/// Schema of a field that is at least 0.
pub fn non_negative(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schema(Some(0))
}

/// Schema of a field that is at least 1.
pub fn positive(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schema(Some(1))
}

/// Schema of a signed field.
pub fn signed(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schema(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_integers_and_substituted_text() {
        let int: IntOrTemplate = serde_json::from_str("4").unwrap();
        assert_eq!(int.value(0), Ok(4));
        let text: IntOrTemplate = serde_json::from_str("\" 3 \"").unwrap();
        assert_eq!(text.value(0), Ok(3));
        let template: IntOrTemplate =
            serde_json::from_str("\"{{ steps.a.outputs.previousReplicas }}\"").unwrap();
        assert!(template.is_template());
        assert!(
            template
                .value(0)
                .unwrap_err()
                .contains("still holds a template")
        );
    }

    #[test]
    fn refuses_wrong_types_and_out_of_range_values() {
        let text = IntOrTemplate::Text("four".into());
        assert!(text.value(0).unwrap_err().contains("not an integer"));
        assert!(
            IntOrTemplate::Int(-1)
                .value(0)
                .unwrap_err()
                .contains("below the minimum 0")
        );
        let huge = IntOrTemplate::Text("99999999999999999999".into());
        assert!(huge.value(0).is_err());
        assert!(
            IntOrTemplate::Int(i64::MAX)
                .value(0)
                .unwrap_err()
                .contains("out of range")
        );
        assert_eq!(IntOrTemplate::Int(-2).value(i32::MIN), Ok(-2));
    }
}
