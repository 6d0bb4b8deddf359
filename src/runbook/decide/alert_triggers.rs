//! What the schema cannot check in `spec.triggers.alerts`: regular expressions and cooldowns.

use crate::conditions::SpecProblem;
use crate::runbook::Runbook;

/// Largest compiled `matchRegex`, so a hostile pattern costs bounded memory and time.
const REGEX_SIZE_LIMIT: usize = 1 << 16;

/// `pattern` anchored at both ends, as Alertmanager anchors its regex matchers.
pub fn compile_alert_regex(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
}

/// Problems in `rb`'s alert triggers the schema cannot see: regular expressions that do not
/// compile and cooldowns that do not parse.
pub fn problems(rb: &Runbook) -> Vec<SpecProblem> {
    let mut problems = Vec::new();
    let Some(triggers) = &rb.spec.triggers else {
        return problems;
    };
    for (i, trigger) in triggers.alerts.iter().enumerate() {
        let at = format!("spec.triggers.alerts[{i}]");
        for (label, pattern) in &trigger.match_regex {
            if let Err(err) = compile_alert_regex(pattern) {
                problems.push(SpecProblem::new(
                    format!("{at}.matchRegex.{label}"),
                    format!(
                        "{:?} is not a regular expression the operator accepts: {}",
                        crate::names::truncate(pattern, 128),
                        crate::names::truncate(&err.to_string(), 256)
                    ),
                ));
            }
        }
        if let Some(Err(err)) = trigger
            .cooldown
            .as_ref()
            .map(crate::duration::Duration::parse)
        {
            problems.push(SpecProblem::new(format!("{at}.cooldown"), err.to_string()));
        }
    }
    problems
}
