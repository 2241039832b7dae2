//! The values that flags take: their types and the parsers that read them. Every parser
//! returns a message that names the rule it checks, never the flag (`main` adds that).

use std::time::Duration;

use crate::endpoints::{Endpoint, EndpointError, Endpoints};
use crate::size::{self, SizeError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    Global,
    Local,
    None,
}

impl EngineMode {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineMode::Global => "global",
            EngineMode::Local => "local",
            EngineMode::None => "none",
        }
    }
}

/// A comma-separated list given as one value, so that '' can mean "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    Positive,
    Negative,
}

impl Polarity {
    pub fn as_str(self) -> &'static str {
        match self {
            Polarity::Positive => "positive",
            Polarity::Negative => "negative",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    Even,
    Pack,
}

impl Scheduling {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheduling::Even => "even",
            Scheduling::Pack => "pack",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Migration {
    Allow,
    Manual,
    None,
}

impl Migration {
    pub fn as_str(self) -> &'static str {
        match self {
            Migration::Allow => "allow",
            Migration::Manual => "manual",
            Migration::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaPriority {
    Low,
    Medium,
    High,
}

impl HaPriority {
    pub fn as_str(self) -> &'static str {
        match self {
            HaPriority::Low => "low",
            HaPriority::Medium => "medium",
            HaPriority::High => "high",
        }
    }
}

/// The hypervisor a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainType {
    Kvm,
    Qemu,
}

impl DomainType {
    pub fn as_str(self) -> &'static str {
        match self {
            DomainType::Kvm => "kvm",
            DomainType::Qemu => "qemu",
        }
    }
}

pub(super) fn parse_endpoints(text: &str) -> Result<Endpoints, EndpointError> {
    Endpoints::parse(text)
}

pub(super) fn parse_peer(text: &str) -> Result<Endpoint, EndpointError> {
    Endpoint::parse(text)
}

pub(super) fn parse_memory(text: &str) -> Result<u64, SizeError> {
    size::parse_mib(text)
}

pub(super) fn parse_vcpus(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

pub(super) fn parse_count(text: &str) -> Result<u32, String> {
    text.trim().parse::<u32>().map_err(|_| format!("'{text}' is not a whole number"))
}

/// A duration in whole milliseconds, e.g. 300ms, 1s, or a plain number of milliseconds.
pub(super) fn parse_millis(text: &str) -> Result<u64, String> {
    let t = text.trim();
    if let Ok(ms) = t.parse::<u64>() {
        return Ok(ms);
    }
    let d = humantime::parse_duration(t).map_err(|_| format!("'{text}' is not a duration (use e.g. 300ms, 1s)"))?;
    Ok(d.as_millis() as u64)
}

pub(super) fn parse_override_bool(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => parse_bool(t).map(|b| b.to_string()),
    }
}

pub(super) fn parse_override_millis(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => match parse_millis(t)? {
            0 => Err("must be more than 0 ms (or 'cluster')".into()),
            ms => Ok(ms.to_string()),
        },
    }
}

pub(super) fn parse_override_number(text: &str) -> Result<String, String> {
    match text.trim() {
        "cluster" => Ok("cluster".into()),
        t => match t.parse::<u64>() {
            Ok(0) | Err(_) => Err(format!("'{text}' is not a positive whole number (or 'cluster')")),
            Ok(n) => Ok(n.to_string()),
        },
    }
}

pub(super) fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" => Ok(true),
        "false" | "no" | "off" => Ok(false),
        _ => Err(format!("'{text}' is not true or false")),
    }
}

pub(super) fn parse_priority(text: &str) -> Result<HaPriority, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "low" => Ok(HaPriority::Low),
        "medium" => Ok(HaPriority::Medium),
        "high" => Ok(HaPriority::High),
        _ => Err(format!("'{text}' is not one of low, medium, high")),
    }
}

pub(super) fn parse_domain_type(text: &str) -> Result<DomainType, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "kvm" => Ok(DomainType::Kvm),
        "qemu" => Ok(DomainType::Qemu),
        _ => Err(format!("'{text}' is not one of kvm, qemu")),
    }
}

pub(super) fn parse_engine_mode(text: &str) -> Result<EngineMode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "global" => Ok(EngineMode::Global),
        "local" => Ok(EngineMode::Local),
        "none" => Ok(EngineMode::None),
        _ => Err(format!("'{text}' is not one of global, local, none")),
    }
}

pub(super) fn parse_list(text: &str) -> Result<NameList, String> {
    Ok(NameList(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()))
}

pub(super) fn parse_polarity(text: &str) -> Result<Polarity, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "positive" => Ok(Polarity::Positive),
        "negative" => Ok(Polarity::Negative),
        _ => Err(format!("'{text}' is not one of positive, negative")),
    }
}

pub(super) fn parse_scheduling(text: &str) -> Result<Scheduling, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "even" => Ok(Scheduling::Even),
        "pack" => Ok(Scheduling::Pack),
        _ => Err(format!("'{text}' is not one of even, pack")),
    }
}

pub(super) fn parse_migration(text: &str) -> Result<Migration, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "allow" => Ok(Migration::Allow),
        "manual" => Ok(Migration::Manual),
        "none" => Ok(Migration::None),
        _ => Err(format!("'{text}' is not one of allow, manual, none")),
    }
}

pub(super) fn parse_overcommit(text: &str) -> Result<u32, String> {
    match text.trim().parse::<u32>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// A shutdown timeout: whole seconds, at least one, as the API takes it.
pub(super) fn parse_timeout(text: &str) -> Result<Duration, String> {
    let timeout =
        humantime::parse_duration(text.trim()).map_err(|_| format!("'{text}' is not a duration (use e.g. 30s, 2m)"))?;
    if timeout < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    if timeout.subsec_nanos() != 0 {
        return Err(format!("'{text}' is not a whole number of seconds"));
    }
    Ok(timeout)
}

pub(super) fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text.trim())
        .map_err(|_| format!("'{text}' is not a duration (use e.g. 30m, 1h, 7d)"))?;
    if ttl < Duration::from_secs(1) {
        return Err("must be at least 1s".to_string());
    }
    Ok(ttl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers_name_the_rule() {
        assert_eq!(parse_vcpus("0").unwrap_err(), "must be at least 1");
        assert_eq!(parse_vcpus("x").unwrap_err(), "'x' is not a whole number");
        assert_eq!(parse_ttl("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_ttl("soon").is_err());
        assert_eq!(parse_bool("False"), Ok(false));
        assert_eq!(parse_priority("HIGH"), Ok(HaPriority::High));
    }

    #[test]
    fn timeouts_are_whole_seconds() {
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("120s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("0s").unwrap_err(), "must be at least 1s");
        assert_eq!(parse_timeout("1500ms").unwrap_err(), "'1500ms' is not a whole number of seconds");
        assert!(parse_timeout("soon").is_err());
    }
}
