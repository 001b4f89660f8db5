//! The validated form and its canonical JSON (the shape saved in the deployment dir and sent over the wire).

use crate::appspec::FileExistsBehavior;
use rollcage_proto::LifecycleEvent;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A validated deployment form. Build one with [`crate::form::parse`], [`crate::form::load`] or
/// [`crate::form::from_json`]; serialising it gives the canonical JSON, which parses back to the same form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Form {
    /// Absolute directory the package contents are copied to.
    pub destination: PathBuf,
    /// What Install does with existing files; `None` leaves it to the deployment's default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "behavior_name"
    )]
    pub file_exists_behavior: Option<FileExistsBehavior>,
    /// ApplicationStop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<FormScript>,
    /// BeforeInstall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_install: Option<FormScript>,
    /// AfterInstall.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_install: Option<FormScript>,
    /// ApplicationStart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<FormScript>,
    /// ValidateService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<FormScript>,
}

/// One inline script of a form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormScript {
    /// The script body (non-empty).
    pub script: String,
    /// Wall-clock limit in seconds; `None` is the AppSpec default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// User to run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runas: Option<String>,
}

/// The form fields that hold a script, with the event each one is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FormScriptEvent {
    /// The form key (`stop`).
    pub key: &'static str,
    /// The lifecycle event (ApplicationStop).
    pub event: LifecycleEvent,
}

impl FormScriptEvent {
    /// Every script field, in the seed's run order.
    pub const ALL: [FormScriptEvent; 5] = [
        FormScriptEvent {
            key: "stop",
            event: LifecycleEvent::ApplicationStop,
        },
        FormScriptEvent {
            key: "before_install",
            event: LifecycleEvent::BeforeInstall,
        },
        FormScriptEvent {
            key: "after_install",
            event: LifecycleEvent::AfterInstall,
        },
        FormScriptEvent {
            key: "start",
            event: LifecycleEvent::ApplicationStart,
        },
        FormScriptEvent {
            key: "check",
            event: LifecycleEvent::ValidateService,
        },
    ];
}

impl Form {
    /// The script of a form key (`stop`, `start`, …).
    pub fn script(&self, key: &str) -> Option<&FormScript> {
        match key {
            "stop" => self.stop.as_ref(),
            "before_install" => self.before_install.as_ref(),
            "after_install" => self.after_install.as_ref(),
            "start" => self.start.as_ref(),
            "check" => self.check.as_ref(),
            _ => None,
        }
    }

    /// The canonical JSON text.
    pub fn to_json(&self) -> String {
        // Serialising plain strings, integers and paths that came from valid UTF-8 cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `file_exists_behavior` as CodeDeploy spells it.
pub(crate) fn behavior_from_name(name: &str) -> Option<FileExistsBehavior> {
    match name {
        "DISALLOW" => Some(FileExistsBehavior::Disallow),
        "OVERWRITE" => Some(FileExistsBehavior::Overwrite),
        "RETAIN" => Some(FileExistsBehavior::Retain),
        _ => None,
    }
}

mod behavior_name {
    use crate::appspec::FileExistsBehavior;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        value: &Option<FileExistsBehavior>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(FileExistsBehavior::Disallow) => s.serialize_str("DISALLOW"),
            Some(FileExistsBehavior::Overwrite) => s.serialize_str("OVERWRITE"),
            Some(FileExistsBehavior::Retain) => s.serialize_str("RETAIN"),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<FileExistsBehavior>, D::Error> {
        let name: Option<String> = Option::deserialize(d)?;
        name.map(|n| {
            super::behavior_from_name(&n).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown file_exists_behavior `{n}`: expected DISALLOW, OVERWRITE or RETAIN"
                ))
            })
        })
        .transpose()
    }
}
