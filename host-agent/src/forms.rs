//! The deployment's form as the executor needs it: parsed once per deployment, not once per step.
//!
//! `StepCommand.form` is the form's canonical JSON. Each step of a deployment carries the same text, so the parsed
//! [`Form`] is kept by deployment id. When the command carries a typed form instead, [`FormCache::get`] becomes
//! `cmd.form.clone()` and this module goes away.

use rollcage_proto::wire::StepCommand;
use rollcage_runtime::form::{self, Form};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Deployments whose parsed form is kept. The agent runs one step at a time, and deployments of a few groups may
/// interleave; eight covers that while bounding what a long-running agent holds.
const KEPT: usize = 8;

/// One deployment's form: its deployment id, the text it was parsed from, and the form.
type Entry = (String, String, Form);

/// Parsed forms of the most recent deployments, by deployment id.
#[derive(Debug, Clone, Default)]
pub struct FormCache {
    recent: Arc<Mutex<VecDeque<Entry>>>,
}

impl FormCache {
    /// The command's form, parsed (`None` for an AppSpec deployment). A bad form fails every step of its deployment:
    /// the coordinator only checked its shape.
    pub fn get(&self, cmd: &StepCommand) -> Result<Option<Form>, String> {
        let Some(text) = &cmd.form else {
            return Ok(None);
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        // The text is compared too, so a deployment id reused with another form can never get a stale one.
        if let Some((_, _, parsed)) = recent
            .iter()
            .find(|(id, t, _)| *id == cmd.deployment_id && t == text)
        {
            return Ok(Some(parsed.clone()));
        }
        let parsed = form::from_json(text, "the deployment's form").map_err(|e| e.to_string())?;
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back((cmd.deployment_id.clone(), text.clone(), parsed.clone()));
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollcage_proto::LifecycleEvent;
    use rollcage_proto::wire::{RevisionLocation, RevisionRef};

    fn cmd(deployment: &str, form: Option<&str>) -> StepCommand {
        StepCommand {
            command_id: 1,
            deployment_id: deployment.into(),
            application: "app".into(),
            group: "g".into(),
            group_id: "g".into(),
            event: LifecycleEvent::BeforeInstall,
            revision: RevisionRef {
                id: "r-1".into(),
                sha256: "0".repeat(64),
                location: RevisionLocation::Coordinator,
            },
            rollback: false,
            form: form.map(str::to_owned),
        }
    }

    const FORM: &str = r#"{"destination":"/opt/a","start":"echo a"}"#;
    const OTHER: &str = r#"{"destination":"/opt/b","start":"echo b"}"#;

    #[test]
    fn a_deployments_form_is_parsed_once() -> Result<(), String> {
        let cache = FormCache::default();
        let first = cache.get(&cmd("d1", Some(FORM)))?.ok_or("no form")?;
        assert_eq!(
            first,
            form::from_json(FORM, "t").map_err(|e| e.to_string())?
        );
        // Swap what is held for d1: a later step of d1 must get it back, proving the text is not parsed again.
        let other = form::from_json(OTHER, "t").map_err(|e| e.to_string())?;
        {
            let mut recent = cache.recent.lock().map_err(|e| e.to_string())?;
            let entry = recent.front_mut().ok_or("nothing cached")?;
            entry.2 = other.clone();
        }
        assert_eq!(cache.get(&cmd("d1", Some(FORM)))?, Some(other));
        // Another deployment, or another text, is parsed.
        assert_eq!(cache.get(&cmd("d2", Some(FORM)))?, Some(first));
        assert_eq!(cache.get(&cmd("d1", None))?, None);
        assert!(cache.get(&cmd("d3", Some("{"))).is_err());
        Ok(())
    }

    #[test]
    fn the_cache_is_bounded() -> Result<(), String> {
        let cache = FormCache::default();
        for i in 0..KEPT + 3 {
            cache.get(&cmd(&format!("d{i}"), Some(FORM)))?;
        }
        let recent = cache.recent.lock().map_err(|e| e.to_string())?;
        assert_eq!(recent.len(), KEPT);
        assert_eq!(recent.front().map(|e| e.0.as_str()), Some("d3"));
        Ok(())
    }
}
