//! The words of the API's enums: "high" for HA_PRIORITY_HIGH, "auto_resume" for
//! RESUME_BEHAVIOR_AUTO_RESUME. They are derived from the proto's own names, so a value and its
//! word are written once (in corral.proto); tables, `-o json` and the string fields that older
//! peers read all show them.

use std::sync::OnceLock;

use crate::v1::{
    DiskInterface, DomainType, EngineMaintenanceMode, EventKind, HaPriority, HostState, MemberRole, MigrationPolicy,
    Polarity, ResumeBehavior, SchedulingPolicy, VmStatus,
};

/// A value of one of the API's enums and its lower-case word. UNSPECIFIED's word is "" (an
/// absent string field says the same: not given, or follow the default).
pub trait Word: Copy + PartialEq + Sized + 'static {
    /// Every value with its word, UNSPECIFIED first.
    fn table() -> &'static [(Self, String)];

    /// The value an enum field holds; a number this build does not know reads as UNSPECIFIED,
    /// as prost's getters read it.
    fn of(field: i32) -> Self;

    fn word(self) -> &'static str {
        Self::table().iter().find(|(v, _)| *v == self).map_or("", |(_, w)| w.as_str())
    }

    /// The value with this word (exactly, as the string fields carry it).
    fn from_word(word: &str) -> Option<Self> {
        Self::table().iter().find(|(_, w)| w == word).map(|(v, _)| *v)
    }

    fn is_unspecified(self) -> bool {
        self == Self::table()[0].0
    }

    /// Every value but UNSPECIFIED, in the proto's order.
    fn values() -> impl Iterator<Item = Self> {
        Self::table().iter().skip(1).map(|(v, _)| *v)
    }

    /// The words of `values()`, as a message lists them: "low, medium or high".
    fn choices() -> String {
        let words: Vec<&str> = Self::values().map(Word::word).collect();
        match words.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => words.concat(),
        }
    }

    /// What a message says, preferring the enum field and falling back to its string field
    /// when the enum is UNSPECIFIED (sent by an older peer, which knows only the strings).
    /// `Err` carries a string that names no value.
    fn or_word(self, fallback: &str) -> Result<Self, &str> {
        if !self.is_unspecified() {
            return Ok(self);
        }
        Self::from_word(fallback).ok_or(fallback)
    }
}

/// Implements [`Word`] from prost's names: the enum's prefix is its UNSPECIFIED value's name
/// less "UNSPECIFIED", and a word is the rest of a name in lower case.
macro_rules! words {
    ($($t:ident),* $(,)?) => {$(
        impl Word for $t {
            fn of(field: i32) -> Self {
                $t::try_from(field).unwrap_or($t::Unspecified)
            }

            fn table() -> &'static [(Self, String)] {
                static TABLE: OnceLock<Vec<($t, String)>> = OnceLock::new();
                TABLE.get_or_init(|| {
                    let prefix = $t::Unspecified.as_str_name().trim_end_matches("UNSPECIFIED");
                    (0..)
                        .map_while(|i| $t::try_from(i).ok())
                        .map(|v| {
                            let word = match v {
                                $t::Unspecified => String::new(),
                                _ => v.as_str_name().trim_start_matches(prefix).to_ascii_lowercase(),
                            };
                            (v, word)
                        })
                        .collect()
                })
            }
        }
    )*};
}

words!(
    DiskInterface,
    HaPriority,
    VmStatus,
    HostState,
    Polarity,
    DomainType,
    MigrationPolicy,
    ResumeBehavior,
    SchedulingPolicy,
    EngineMaintenanceMode,
    MemberRole,
    EventKind,
);

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn words_are_the_names_without_the_prefix_in_lower_case() {
        assert_eq!(HaPriority::High.word(), "high");
        assert_eq!(ResumeBehavior::AutoResume.word(), "auto_resume");
        assert_eq!(HostState::PreparingForMaintenance.word(), "preparing_for_maintenance");
        assert_eq!(EventKind::VmHighAvailability.word(), "vm_high_availability");
        assert_eq!(MigrationPolicy::None.word(), "none");
        assert_eq!(VmStatus::Unspecified.word(), "");
        assert_eq!(DomainType::from_word("qemu"), Some(DomainType::Qemu));
        assert_eq!(DomainType::from_word("QEMU"), None);
        assert_eq!(MemberRole::values().count(), 2);
        assert_eq!(HaPriority::choices(), "low, medium or high");
    }

    #[test]
    fn the_enum_is_preferred_and_an_older_peers_string_read_when_it_is_unspecified() {
        assert_eq!(HaPriority::Low.or_word("high"), Ok(HaPriority::Low));
        assert_eq!(HaPriority::Unspecified.or_word("high"), Ok(HaPriority::High));
        assert_eq!(HaPriority::Unspecified.or_word(""), Ok(HaPriority::Unspecified));
        assert_eq!(HaPriority::Unspecified.or_word("urgent"), Err("urgent"));
    }

    /// The CLI's flag values (clap's names) are the same words.
    #[test]
    fn clap_names_are_the_words() {
        fn check<E: ValueEnum + Word + std::fmt::Debug>() {
            let clap: Vec<String> =
                E::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().into()).collect();
            let words: Vec<String> = E::values().map(|v| v.word().to_string()).collect();
            assert_eq!(clap, words, "{}", std::any::type_name::<E>());
        }
        check::<HaPriority>();
        check::<Polarity>();
        check::<DomainType>();
        check::<MigrationPolicy>();
        check::<ResumeBehavior>();
        check::<SchedulingPolicy>();
        check::<EngineMaintenanceMode>();
    }
}
