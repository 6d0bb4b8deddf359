//! Behaviour tests against the local control plane (`make test` starts it). Each test works
//! in its own namespace with its own operator process.

mod alerts;
mod approvals;
mod backups;
mod bad_input;
mod blue_green;
mod chart;
mod cluster;
mod concurrency;
mod crash;
mod decisions;
mod egress;
mod escalation;
mod example_rules;
mod example_runs;
mod examples;
mod ha;
mod hostile_inputs;
mod identity;
mod incident;
mod metrics;
mod monitoring;
mod notifications;
mod notify;
mod outbound;
mod outputs;
mod plugin;
mod rbac;
mod restore;
mod sinks_support;
mod steps;
mod support;
mod tenancy;
mod triggers;
mod windows;
