//! The cluster's alarms (etcd's `v3alarm`): which member raised which alarm. They are replicated
//! — raised and cleared by `AlarmRequest` entries every member applies — and kept in the storage
//! engine with the rest of the state, so they survive restarts and travel with snapshots.
//!
//! While a NOSPACE alarm is raised the state machine refuses what would grow the database (puts,
//! transactions that put, lease grants), as etcd's capped applier does; while a CORRUPT alarm is
//! raised it refuses every key-value and lease request, as etcd's corrupt applier does.

use std::collections::BTreeSet;

use crate::proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
};

/// A stored alarm list that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("alarm list is corrupt: {0}")]
pub struct CorruptAlarms(pub String);

/// The raised alarms: (member ID, alarm type), at most one of each pair.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alarms {
    raised: BTreeSet<(u64, AlarmKind)>,
}

/// An alarm type other than NONE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum AlarmKind {
    NoSpace,
    Corrupt,
}

impl AlarmKind {
    fn from_type(alarm: AlarmType) -> Option<AlarmKind> {
        match alarm {
            AlarmType::None => None,
            AlarmType::Nospace => Some(AlarmKind::NoSpace),
            AlarmType::Corrupt => Some(AlarmKind::Corrupt),
        }
    }

    fn to_type(self) -> AlarmType {
        match self {
            AlarmKind::NoSpace => AlarmType::Nospace,
            AlarmKind::Corrupt => AlarmType::Corrupt,
        }
    }
}

impl Alarms {
    /// Applies a committed `AlarmRequest`, as etcd does: GET lists the alarms of the requested
    /// type (every alarm for NONE); ACTIVATE raises one and answers it (NONE raises nothing);
    /// DEACTIVATE clears one and answers it if it was raised.
    pub fn apply(&mut self, request: &AlarmRequest) -> AlarmResponse {
        let alarm = AlarmType::try_from(request.alarm).unwrap_or(AlarmType::None);
        let kind = AlarmKind::from_type(alarm);
        let member = |kind: AlarmKind| AlarmMember {
            member_id: request.member_id,
            alarm: kind.to_type() as i32,
        };
        let alarms = match AlarmAction::try_from(request.action) {
            Ok(AlarmAction::Get) => self.list(alarm),
            Ok(AlarmAction::Activate) => match kind {
                Some(kind) => {
                    self.raised.insert((request.member_id, kind));
                    vec![member(kind)]
                }
                None => Vec::new(),
            },
            Ok(AlarmAction::Deactivate) => match kind {
                Some(kind) if self.raised.remove(&(request.member_id, kind)) => vec![member(kind)],
                _ => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        AlarmResponse {
            alarms,
            ..Default::default()
        }
    }

    /// The raised alarms of one type, or all of them for NONE, ordered by member then type.
    pub fn list(&self, alarm: AlarmType) -> Vec<AlarmMember> {
        let wanted = AlarmKind::from_type(alarm);
        self.raised
            .iter()
            .filter(|(_, kind)| wanted.is_none_or(|wanted| wanted == *kind))
            .map(|&(member_id, kind)| AlarmMember {
                member_id,
                alarm: kind.to_type() as i32,
            })
            .collect()
    }

    /// Whether any member raised NOSPACE: writes that grow the database are refused.
    pub fn no_space(&self) -> bool {
        self.raised
            .iter()
            .any(|(_, kind)| *kind == AlarmKind::NoSpace)
    }

    /// Whether any member raised CORRUPT: key-value and lease requests are refused.
    pub fn corrupt(&self) -> bool {
        self.raised
            .iter()
            .any(|(_, kind)| *kind == AlarmKind::Corrupt)
    }

    pub fn is_empty(&self) -> bool {
        self.raised.is_empty()
    }

    /// The alarms as `Status.errors` lists them (etcd's `AlarmMember.String()`).
    pub fn describe(&self) -> Vec<String> {
        self.raised
            .iter()
            .map(|(member, kind)| {
                format!("memberID:{member} alarm:{} ", kind.to_type().as_str_name())
            })
            .collect()
    }

    /// Rebuilds the alarms from a stored list; an unknown or NONE alarm type is corrupt.
    pub fn from_list(list: &[AlarmMember]) -> Result<Alarms, CorruptAlarms> {
        let mut alarms = Alarms::default();
        for member in list {
            let kind = AlarmType::try_from(member.alarm)
                .ok()
                .and_then(AlarmKind::from_type)
                .ok_or_else(|| {
                    CorruptAlarms(format!(
                        "member {:x} has alarm type {}",
                        member.member_id, member.alarm
                    ))
                })?;
            if !alarms.raised.insert((member.member_id, kind)) {
                return Err(CorruptAlarms(format!(
                    "member {:x} has alarm {} twice",
                    member.member_id,
                    kind.to_type().as_str_name()
                )));
            }
        }
        Ok(alarms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: AlarmAction, member_id: u64, alarm: AlarmType) -> AlarmRequest {
        AlarmRequest {
            action: action as i32,
            member_id,
            alarm: alarm as i32,
        }
    }

    fn member(member_id: u64, alarm: AlarmType) -> AlarmMember {
        AlarmMember {
            member_id,
            alarm: alarm as i32,
        }
    }

    #[test]
    fn activate_answers_the_alarm_and_raising_it_twice_keeps_one() {
        let mut alarms = Alarms::default();
        let raised = alarms.apply(&request(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(raised.alarms, vec![member(7, AlarmType::Nospace)]);
        alarms.apply(&request(AlarmAction::Activate, 7, AlarmType::Nospace));
        assert_eq!(
            alarms.list(AlarmType::None),
            vec![member(7, AlarmType::Nospace)]
        );
        assert!(alarms.no_space());
        assert!(!alarms.corrupt());
    }

    #[test]
    fn activating_none_raises_nothing() {
        let mut alarms = Alarms::default();
        let raised = alarms.apply(&request(AlarmAction::Activate, 7, AlarmType::None));
        assert!(raised.alarms.is_empty());
        assert!(alarms.is_empty());
    }

    #[test]
    fn get_filters_by_type_and_none_lists_all() {
        let mut alarms = Alarms::default();
        alarms.apply(&request(AlarmAction::Activate, 9, AlarmType::Corrupt));
        alarms.apply(&request(AlarmAction::Activate, 7, AlarmType::Nospace));
        let all = alarms.apply(&request(AlarmAction::Get, 0, AlarmType::None));
        assert_eq!(
            all.alarms,
            vec![member(7, AlarmType::Nospace), member(9, AlarmType::Corrupt)]
        );
        let corrupt = alarms.apply(&request(AlarmAction::Get, 0, AlarmType::Corrupt));
        assert_eq!(corrupt.alarms, vec![member(9, AlarmType::Corrupt)]);
    }

    #[test]
    fn deactivate_clears_only_the_named_alarm_of_the_named_member() {
        let mut alarms = Alarms::default();
        alarms.apply(&request(AlarmAction::Activate, 7, AlarmType::Nospace));
        alarms.apply(&request(AlarmAction::Activate, 8, AlarmType::Nospace));
        let missing = alarms.apply(&request(AlarmAction::Deactivate, 9, AlarmType::Nospace));
        assert!(missing.alarms.is_empty());
        let cleared = alarms.apply(&request(AlarmAction::Deactivate, 7, AlarmType::Nospace));
        assert_eq!(cleared.alarms, vec![member(7, AlarmType::Nospace)]);
        assert!(alarms.no_space(), "member 8's alarm is still raised");
        alarms.apply(&request(AlarmAction::Deactivate, 8, AlarmType::Nospace));
        assert!(!alarms.no_space());
    }

    #[test]
    fn status_strings_are_etcds() {
        let mut alarms = Alarms::default();
        alarms.apply(&request(AlarmAction::Activate, 255, AlarmType::Nospace));
        assert_eq!(
            alarms.describe(),
            vec!["memberID:255 alarm:NOSPACE ".to_string()]
        );
    }

    #[test]
    fn a_stored_list_round_trips_and_a_bad_one_is_refused() {
        let mut alarms = Alarms::default();
        alarms.apply(&request(AlarmAction::Activate, 1, AlarmType::Nospace));
        alarms.apply(&request(AlarmAction::Activate, 2, AlarmType::Corrupt));
        let list = alarms.list(AlarmType::None);
        assert_eq!(Alarms::from_list(&list), Ok(alarms));
        assert!(Alarms::from_list(&[member(1, AlarmType::None)]).is_err());
        let unknown = AlarmMember {
            member_id: 1,
            alarm: 17,
        };
        assert!(Alarms::from_list(&[unknown]).is_err());
        let twice = [member(1, AlarmType::Nospace), member(1, AlarmType::Nospace)];
        assert!(Alarms::from_list(&twice).is_err());
    }
}
