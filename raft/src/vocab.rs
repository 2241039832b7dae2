//! The model's closed sets of values and the API's enums (corral.proto), mapped in one place
//! each way. A model value's word is its API enum's word (`corral_proto::Word`), so the words
//! of tables, `-o json`, error messages and OVF documents are written once, in the proto. The
//! stored formats are not words: serde names the model's variants (`Kvm`), as it always has.

use std::fmt;
use std::str::FromStr;

use corral_proto as pb;
use corral_proto::Word;

use crate::error::ClusterError;
use crate::model;

/// A model type with a closed set of values, and the API enum that carries them.
pub trait Vocab: TryFrom<Self::Api> {
    type Api: Word + From<Self>;
}

/// An API enum's UNSPECIFIED value, which no model value has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unspecified;

/// `From<model::X> for pb::Y` and `TryFrom<pb::Y> for model::X`, naming every variant on both
/// sides (`Model = Proto` where the names differ), so that a value added to either side does
/// not compile until it is mapped here; and the model value's words through them: `as_str`,
/// `Display`, and `FromStr`, whose refusal names `field` and lists the words.
macro_rules! vocab {
    ($($model:ident => $proto:ident as $field:literal { $($m:ident $(= $p:ident)?),* $(,)? })*) => {$(
        impl From<model::$model> for pb::$proto {
            fn from(v: model::$model) -> Self {
                match v {
                    $(model::$model::$m => vocab!(@proto $proto $m $($p)?),)*
                }
            }
        }
        impl Vocab for model::$model {
            type Api = pb::$proto;
        }
        impl model::$model {
            /// The API's enum for this value, as a message's enum field holds it.
            pub fn wire(self) -> i32 {
                pb::$proto::from(self).into()
            }

            /// This value's word ("high", "auto_resume").
            pub fn as_str(self) -> &'static str {
                pb::$proto::from(self).word()
            }
        }
        impl fmt::Display for model::$model {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for model::$model {
            type Err = ClusterError;
            fn from_str(s: &str) -> Result<Self, ClusterError> {
                pb::$proto::from_word(s).and_then(|v| Self::try_from(v).ok()).ok_or_else(|| refused::<Self>($field, s))
            }
        }
        impl TryFrom<pb::$proto> for model::$model {
            type Error = Unspecified;
            fn try_from(v: pb::$proto) -> Result<Self, Unspecified> {
                match v {
                    $(vocab!(@proto $proto $m $($p)?) => Ok(model::$model::$m),)*
                    pb::$proto::Unspecified => Err(Unspecified),
                }
            }
        }
    )*};
    (@proto $proto:ident $m:ident) => { pb::$proto::$m };
    (@proto $proto:ident $m:ident $p:ident) => { pb::$proto::$p };
}

vocab! {
    HaPriority => HaPriority as "ha_priority" { Low, Medium, High }
    VmStatus => VmStatus as "status" {
        Down, PoweringUp, Up, Paused, Suspended, RebootInProgress, PoweringDown, Migrating, NotResponding, Unknown,
    }
    HostState => HostState as "state" { Joining, Up, NonResponsive, Down, PreparingForMaintenance, Maintenance }
    Polarity => Polarity as "polarity" { Positive, Negative }
    DomainType => DomainType as "domain_type" { Kvm, Qemu, Test }
    MigrationPolicy => MigrationPolicy as "migration_policy" { Allow, Manual, None }
    ResumeBehavior => ResumeBehavior as "resume_behavior" { AutoResume, LeavePaused, Kill }
    DiskInterface => DiskInterface as "interface" { Virtio, Scsi }
    SchedulingPolicy => SchedulingPolicy as "scheduling" { EvenDistribution = Even, Packing = Pack }
    EventKind => EventKind as "kind" {
        ClusterBootstrapped, HostJoined, HostLeft, HostStateChanged, HostMaintenance, LeaderChanged, TokenCreated,
        VmCreated, VmEdited, VmDeleted, VmStateChanged, VmHighAvailability, VmMigration, DiskCreated, DiskDeleted,
        AffinityChanged, HostEdited, ClusterEdited, UserEdited, PermissionChanged, LoginFailed, VmSnapshot, Library,
    }
}

/// What a request says for one closed-set field: its enum, or when that is unspecified (a
/// client that sends only the string, such as release 3f21f51's CLI) its string. `None` when
/// neither is given; a string that names no value is refused, naming `field`.
pub fn read<M: Vocab>(field: &'static str, value: i32, text: &str) -> Result<Option<M>, ClusterError> {
    match M::Api::of(value).or_word(text) {
        Ok(v) => Ok(M::try_from(v).ok()),
        Err(bad) => Err(refused::<M>(field, bad)),
    }
}

/// `read` for a field that must be given: an empty string from an older client is refused.
pub fn read_given<M: Vocab>(field: &'static str, value: i32, text: &str) -> Result<M, ClusterError> {
    read(field, value, text)?.ok_or_else(|| refused::<M>(field, text))
}

/// `read` for an edit's optional string: absent leaves the value as it is, but one that is
/// present must name a value (an older client's empty string was refused, and still is).
pub fn read_change<M: Vocab>(field: &'static str, value: i32, text: Option<&str>) -> Result<Option<M>, ClusterError> {
    match text {
        Some(t) => read_given(field, value, t).map(Some),
        None => read(field, value, ""),
    }
}

fn refused<M: Vocab>(field: &'static str, bad: &str) -> ClusterError {
    ClusterError::invalid(field, format!("must be {} (got '{}')", M::Api::choices(), crate::error::quote(bad)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_api_value_maps_to_a_model_value_and_back() {
        fn round_trip<P, M>()
        where
            P: Word + From<M> + std::fmt::Debug,
            M: TryFrom<P> + Copy,
        {
            for p in P::values() {
                let m = M::try_from(p).ok().expect("every value but UNSPECIFIED maps");
                assert_eq!(P::from(m), p);
            }
            assert!(M::try_from(P::table()[0].0).is_err(), "UNSPECIFIED has no model value");
        }
        round_trip::<pb::HaPriority, model::HaPriority>();
        round_trip::<pb::VmStatus, model::VmStatus>();
        round_trip::<pb::HostState, model::HostState>();
        round_trip::<pb::Polarity, model::Polarity>();
        round_trip::<pb::DomainType, model::DomainType>();
        round_trip::<pb::MigrationPolicy, model::MigrationPolicy>();
        round_trip::<pb::ResumeBehavior, model::ResumeBehavior>();
        round_trip::<pb::SchedulingPolicy, model::SchedulingPolicy>();
        round_trip::<pb::EventKind, model::EventKind>();
    }

    #[test]
    fn a_request_is_read_from_its_enum_or_else_its_string() {
        let read = |v: pb::DomainType, t| read::<model::DomainType>("domain_type", v.into(), t);
        assert_eq!(read(pb::DomainType::Qemu, "kvm"), Ok(Some(model::DomainType::Qemu)));
        assert_eq!(read(pb::DomainType::Unspecified, "kvm"), Ok(Some(model::DomainType::Kvm)));
        assert_eq!(read(pb::DomainType::Unspecified, ""), Ok(None));
        assert_eq!(super::read("domain_type", 99, "qemu"), Ok(Some(model::DomainType::Qemu)));
        let refused = read(pb::DomainType::Unspecified, "xen").unwrap_err().to_string();
        assert_eq!(refused, "domain_type: must be kvm, qemu or test (got 'xen')");
        let change = |v: pb::HaPriority, t| read_change::<model::HaPriority>("ha_priority", v.into(), t);
        assert_eq!(change(pb::HaPriority::Unspecified, None), Ok(None));
        assert_eq!(change(pb::HaPriority::High, None), Ok(Some(model::HaPriority::High)));
        assert_eq!(change(pb::HaPriority::Unspecified, Some("low")), Ok(Some(model::HaPriority::Low)));
        let refused = change(pb::HaPriority::Unspecified, Some("")).unwrap_err().to_string();
        assert_eq!(refused, "ha_priority: must be low, medium or high (got '')");
    }

    /// The words the model had before they came from the proto, and its refusals: the same,
    /// but for the domain type's, which now lists "test" (always accepted) too.
    #[test]
    fn model_words_and_refusals() {
        use model::*;
        assert_eq!(HostState::NonResponsive.as_str(), "non_responsive");
        assert_eq!(VmStatus::RebootInProgress.to_string(), "reboot_in_progress");
        assert_eq!(SchedulingPolicy::EvenDistribution.as_str(), "even");
        assert_eq!(EventKind::VmHighAvailability.as_str(), "vm_high_availability");
        assert_eq!("auto_resume".parse(), Ok(ResumeBehavior::AutoResume));
        assert_eq!("pack".parse(), Ok(SchedulingPolicy::Packing));
        assert_eq!("test".parse(), Ok(DomainType::Test));
        let refusal = |r: Result<HaPriority, ClusterError>| r.unwrap_err().to_string();
        assert_eq!(refusal("urgent".parse()), "ha_priority: must be low, medium or high (got 'urgent')");
        let refusal = |r: Result<MigrationPolicy, ClusterError>| r.unwrap_err().to_string();
        assert_eq!(refusal("".parse()), "migration_policy: must be allow, manual or none (got '')");
        let refusal = |r: Result<DomainType, ClusterError>| r.unwrap_err().to_string();
        assert_eq!(refusal("xen".parse()), "domain_type: must be kvm, qemu or test (got 'xen')");
    }
}
