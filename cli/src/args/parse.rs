//! The values that flags take: their types and the parsers that read them. Every parser
//! returns a message that names the rule it checks, never the flag (`main` adds that).

use std::ffi::OsStr;
use std::marker::PhantomData;
use std::time::Duration;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::ValueEnum;

use crate::endpoints::{Endpoint, EndpointError, Endpoints};
use crate::size::{self, SizeError};

// The closed sets of values flags take are the API's own enums (clap's `ValueEnum` is derived
// on them in corral-proto), under the names the CLI has always used.
pub use corral_proto::{
    DiskInterface, DomainType, EngineMaintenanceMode as EngineMode, HaPriority, MigrationPolicy as Migration, Polarity,
    ResumeBehavior, SchedulingPolicy as Scheduling,
};

/// The parser of a flag whose values are one of the API's enums: by word, ignoring case and
/// surrounding blanks; help lists the values, and a refusal names them.
#[derive(Clone)]
pub(super) struct OneOf<E>(PhantomData<E>);

pub(super) fn one_of<E>() -> OneOf<E> {
    OneOf(PhantomData)
}

fn parse_one_of<E: ValueEnum>(text: &str) -> Result<E, String> {
    let t = text.trim();
    if let Some(v) = E::value_variants().iter().find(|v| v.to_possible_value().is_some_and(|p| p.matches(t, true))) {
        return Ok(v.clone());
    }
    let shown: Vec<String> = E::value_variants()
        .iter()
        .filter_map(ValueEnum::to_possible_value)
        .filter(|p| !p.is_hide_set())
        .map(|p| p.get_name().to_string())
        .collect();
    Err(format!("'{text}' is not one of {}", shown.join(", ")))
}

impl<E: ValueEnum + Send + Sync + 'static> TypedValueParser for OneOf<E> {
    type Value = E;

    fn parse_ref(&self, cmd: &clap::Command, arg: Option<&clap::Arg>, value: &OsStr) -> Result<E, clap::Error> {
        // Through clap's own fn-parser, so that a refusal is reported as every other parser's is.
        (parse_one_of::<E> as fn(&str) -> Result<E, String>).parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(E::value_variants().iter().filter_map(ValueEnum::to_possible_value)))
    }
}

/// A comma-separated list given as one value, so that '' can mean "none".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameList(pub Vec<String>);

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

pub(super) fn parse_list(text: &str) -> Result<NameList, String> {
    Ok(NameList(text.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_string).collect()))
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

/// How long one endpoint may take to connect and answer: any positive duration with a unit.
pub(super) fn parse_connect_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text.trim())
        .map_err(|_| format!("'{text}' is not a duration (use e.g. 500ms, 2s)"))?;
    if timeout < Duration::from_millis(1) {
        return Err("must be at least 1ms".to_string());
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
        assert_eq!(parse_one_of::<HaPriority>(" HIGH"), Ok(HaPriority::High));
    }

    #[test]
    fn enum_values_are_the_apis_words_and_unspecified_is_not_one() {
        assert_eq!(parse_one_of::<ResumeBehavior>("leave_paused"), Ok(ResumeBehavior::LeavePaused));
        assert_eq!(parse_one_of::<Scheduling>("pack"), Ok(Scheduling::Pack));
        assert_eq!(
            parse_one_of::<HaPriority>("unspecified").unwrap_err(),
            "'unspecified' is not one of low, medium, high"
        );
        // libvirt's test driver type is accepted but not offered (it runs only on test:///default).
        assert_eq!(parse_one_of::<DomainType>("test"), Ok(DomainType::Test));
        assert_eq!(parse_one_of::<DomainType>("xen").unwrap_err(), "'xen' is not one of kvm, qemu");
    }

    #[test]
    fn connect_timeouts_take_a_unit_and_are_positive() {
        assert_eq!(parse_connect_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_connect_timeout(" 2s "), Ok(Duration::from_secs(2)));
        assert_eq!(parse_connect_timeout("0").unwrap_err(), "must be at least 1ms");
        assert_eq!(parse_connect_timeout("0s").unwrap_err(), "must be at least 1ms");
        assert_eq!(parse_connect_timeout("5").unwrap_err(), "'5' is not a duration (use e.g. 500ms, 2s)");
        assert_eq!(parse_connect_timeout("banana").unwrap_err(), "'banana' is not a duration (use e.g. 500ms, 2s)");
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
