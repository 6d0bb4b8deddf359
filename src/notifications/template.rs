//! The text of a lifecycle notification: the rule's template with the event's and the object's
//! fields substituted, or a default summary.

use serde_json::Value;

use super::{LifecycleEvent, Outgoing};

/// Longest message sent, in bytes (a longer rendering is cut).
const MAX_TEXT: usize = 8 * 1024;

/// The message for `out` about `object` (the object as JSON: metadata, spec, status).
/// `{{ x }}` placeholders that name nothing render empty. An ApprovalNeeded message always
/// holds its approve command, appended when the template leaves it out.
pub fn render(out: &Outgoing, object: &Value) -> String {
    let occurrence = &out.occurrence;
    let mut text = match &out.template {
        Some(template) => substitute(template, |name| field(name, out, object)),
        None => default_text(out, object),
    };
    if occurrence.event == LifecycleEvent::ApprovalNeeded
        && let Some(command) = &occurrence.command
        && !text.contains(command.as_str())
    {
        text.push_str(&format!("\nApprove with: {command}"));
    }
    crate::names::truncate(&text, MAX_TEXT).into_owned()
}

fn default_text(out: &Outgoing, object: &Value) -> String {
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("object");
    let meta = &object["metadata"];
    let namespace = meta["namespace"].as_str().unwrap_or_default();
    let name = meta["name"].as_str().unwrap_or_default();
    let occurrence = &out.occurrence;
    let mut text = format!(
        "{kind} {namespace}/{name}: {}: {}",
        occurrence.event, occurrence.message
    );
    if out.level > 0 {
        text = format!("[escalation {}] {text}", out.level);
    }
    if let Some(command) = &occurrence.command {
        text.push_str(&format!(" ({command})"));
    }
    text
}

fn field(name: &str, out: &Outgoing, object: &Value) -> String {
    let occurrence = &out.occurrence;
    match name {
        "event.name" => occurrence.event.as_str().to_owned(),
        "event.id" => occurrence.id.clone(),
        "event.message" => occurrence.message.clone(),
        "event.command" => occurrence.command.clone().unwrap_or_default(),
        "escalation.level" => out.level.to_string(),
        _ => match name.strip_prefix("object.") {
            Some(path) => lookup(object, path),
            None => String::new(),
        },
    }
}

/// The value at a dotted path (`status.phase`, `metadata.labels.team`), as text.
fn lookup(object: &Value, path: &str) -> String {
    let mut current = object;
    for part in path.split('.') {
        current = match current {
            Value::Object(map) => match map.get(part) {
                Some(v) => v,
                None => return String::new(),
            },
            Value::Array(items) => match part.parse::<usize>().ok().and_then(|i| items.get(i)) {
                Some(v) => v,
                None => return String::new(),
            },
            _ => return String::new(),
        };
    }
    match current {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Replaces every `{{ name }}` in `template` with `value(name)`.
fn substitute(template: &str, value: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => {
                out.push_str(&value(after[..end].trim()));
                rest = &after[end + 2..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}
