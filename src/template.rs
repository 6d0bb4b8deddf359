//! `{{ path }}` templates inside step fields: `{{ params.NAME }}` (substituted when a run
//! starts) and `{{ steps.STEP.outputs.KEY }}` / `{{ steps.STEP.phase }}` (substituted just
//! before the step acts, from the run's journal). One scanner for every kind of reference, so
//! finding and replacing them can never disagree.

/// A reference inside a template, as written between the braces (trimmed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference<'a> {
    /// `params.NAME`.
    Param(&'a str),
    /// `steps.STEP.outputs.KEY`.
    Output {
        /// The step's name.
        step: &'a str,
        /// The output's key.
        key: &'a str,
    },
    /// `steps.STEP.phase`.
    Phase(&'a str),
    /// Anything else (left as written; a run with one fails).
    Other(&'a str),
}

impl<'a> Reference<'a> {
    /// Reads the text between the braces.
    pub fn parse(inner: &'a str) -> Self {
        let inner = inner.trim();
        if let Some(name) = inner.strip_prefix("params.") {
            return Reference::Param(name.trim());
        }
        if let Some(rest) = inner.strip_prefix("steps.") {
            if let Some((step, key)) = rest.split_once(".outputs.")
                && !step.is_empty()
                && !key.is_empty()
                && !key.contains('.')
            {
                return Reference::Output {
                    step: step.trim(),
                    key: key.trim(),
                };
            }
            if let Some(step) = rest.strip_suffix(".phase")
                && !step.is_empty()
            {
                return Reference::Phase(step.trim());
            }
        }
        Reference::Other(inner)
    }

    /// The step a `steps.` reference names.
    pub fn step(&self) -> Option<&'a str> {
        match self {
            Reference::Output { step, .. } | Reference::Phase(step) => Some(step),
            _ => None,
        }
    }
}

/// Every `{{ ... }}` reference in `text`, in order (an unterminated `{{` ends the scan).
pub fn references(text: &str) -> Vec<Reference<'_>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else { break };
        found.push(Reference::parse(&after[..close]));
        rest = &after[close + 2..];
    }
    found
}

/// `text` with every reference `lookup` knows replaced by its value; the others are left as
/// written.
pub fn substitute(text: &str, mut lookup: impl FnMut(Reference<'_>) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        match lookup(Reference::parse(&after[..close])) {
            Some(value) => out.push_str(&value),
            None => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// Fields of a step that are CEL, not text: templates are never substituted into them (a
/// value would become code); an expression reads `params` and `steps` as variables.
pub const CEL_FIELDS: [&str; 1] = ["when"];

/// Applies `edit` to every string of a step's JSON form except its [`CEL_FIELDS`].
pub fn for_each_text(step: &mut serde_json::Value, edit: &mut impl FnMut(&str, &mut String)) {
    fn walk(value: &mut serde_json::Value, path: &str, edit: &mut impl FnMut(&str, &mut String)) {
        match value {
            serde_json::Value::String(text) => edit(path, text),
            serde_json::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, &format!("{path}[{i}]"), edit);
                }
            }
            serde_json::Value::Object(map) => {
                for (key, item) in map.iter_mut() {
                    walk(item, &format!("{path}.{key}"), edit);
                }
            }
            _ => {}
        }
    }
    if let serde_json::Value::Object(map) = step {
        for (key, item) in map.iter_mut() {
            if !CEL_FIELDS.contains(&key.as_str()) {
                walk(item, key, edit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_reference() {
        let refs = references(
            "{{ params.host }}:{{params.port}}/{{ steps.scale-down.outputs.previousReplicas }}/{{ steps.verify.phase }}/{{ other }}/{{ steps.a.outputs.b.c }}",
        );
        assert_eq!(
            refs,
            [
                Reference::Param("host"),
                Reference::Param("port"),
                Reference::Output {
                    step: "scale-down",
                    key: "previousReplicas"
                },
                Reference::Phase("verify"),
                Reference::Other("other"),
                Reference::Other("steps.a.outputs.b.c"),
            ]
        );
        assert!(references("no braces, {{ unterminated").is_empty());
    }

    #[test]
    fn substitutes_what_the_lookup_knows_and_leaves_the_rest() {
        let out = substitute(
            "{{ params.a }}-{{ steps.x.phase }}-{{ other }}-{{",
            |r| match r {
                Reference::Param("a") => Some("1".into()),
                Reference::Phase("x") => Some("Failed".into()),
                _ => None,
            },
        );
        assert_eq!(out, "1-Failed-{{ other }}-{{");
    }

    #[test]
    fn cel_fields_are_never_edited() {
        let mut step = serde_json::json!({"name": "n", "when": "{{ params.a }}", "http": {"url": "{{ params.a }}"}});
        let mut seen = Vec::new();
        for_each_text(&mut step, &mut |path, text| {
            seen.push(path.to_owned());
            *text = text.replace("{{ params.a }}", "x");
        });
        assert_eq!(seen, ["http.url", "name"]);
        assert_eq!(step["when"], "{{ params.a }}");
        assert_eq!(step["http"]["url"], "x");
    }
}
