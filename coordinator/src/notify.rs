//! Who waits for what, and waking them after a commit.
//!
//! Three kinds of waiters: an agent's long poll (`POST /v1/agent/poll`) sleeps on its instance's [`Wakers`] entry;
//! the live progress stream and the `logs` long poll (`GET /v1/deployments/{id}/events`, `…/logs`) follow a
//! deployment through [`Changes`]; the traffic runner (`engine::traffic::run`) sleeps on one `Notify`. Nobody calls
//! them by hand: the store records what each transaction touched ([`crate::store::Touched`]) and, once it
//! committed, [`Notifiers::committed`] (installed by the shared state as the store's commit hook) wakes exactly
//! those.
//!
//! [`Changes`] keeps one `tokio::sync::watch` channel per followed deployment holding a generation counter, so a
//! slow reader coalesces: however many bumps it missed, it wakes once and reads the latest state, never a backlog.
//! A stream [`Changes::subscribe`]s before it reads the first snapshot, so a change committed in between still wakes.

use crate::store::Touched;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, watch};

/// Every waiter the coordinator wakes after a commit.
#[derive(Debug, Default)]
pub struct Notifiers {
    /// Agent long polls, by instance.
    pub wakers: Wakers,
    /// Deployment followers (progress stream, logs long poll).
    pub changes: Changes,
    /// The traffic runner: a dispatched coordinator step. `notify_one` keeps a permit when the runner is busy, so
    /// a dispatch during its scan is not lost.
    pub traffic: Notify,
    /// The webhook delivery task (`webhooks::deliver::run`): deliveries were queued.
    pub webhooks: Notify,
}

impl Notifiers {
    /// Nobody waits yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A transaction that touched `t` committed: wake whoever waits on it.
    pub fn committed(&self, t: &Touched) {
        if t.everything {
            self.wakers.wake_all();
            self.changes.bump_all();
            self.traffic.notify_one();
            self.webhooks.notify_one();
            return;
        }
        self.wakers.wake(&t.instances);
        self.changes.bump_many(&t.deployments);
        if t.coordinator_steps {
            self.traffic.notify_one();
        }
        if t.webhooks {
            self.webhooks.notify_one();
        }
    }
}

/// The notifier each agent's long poll sleeps on.
#[derive(Debug, Default)]
pub struct Wakers {
    map: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Wakers {
    /// The notifier a waiting poll of `instance` sleeps on.
    pub fn waker(&self, instance: &str) -> Arc<Notify> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(instance.to_owned()).or_default().clone()
    }

    /// Wake the waiting polls of these instances.
    pub fn wake<S: AsRef<str>>(&self, instances: impl IntoIterator<Item = S>) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for i in instances {
            if let Some(n) = map.get(i.as_ref()) {
                n.notify_waiters();
            }
        }
    }
}

impl Wakers {
    /// Wake every waiting poll (a notification without detail).
    pub fn wake_all(&self) {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for n in map.values() {
            n.notify_waiters();
        }
    }
}

/// A subscription to one deployment's changes: [`watch::Receiver::changed`] resolves after the next bump.
pub type Subscription = watch::Receiver<u64>;

/// The per-deployment notifiers. Only deployments somebody follows have an entry.
#[derive(Debug, Default)]
pub struct Changes {
    channels: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Changes {
    /// An empty notifier.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follow deployment `id`. Subscribe before reading its state, so a change committed in between still wakes.
    pub fn subscribe(&self, id: &str) -> Subscription {
        let mut map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        // Channels nobody listens to any more are dropped here, so the map stays as small as the live followers.
        map.retain(|_, tx| tx.receiver_count() > 0);
        match map.get(id) {
            Some(tx) => tx.subscribe(),
            None => {
                let (tx, rx) = watch::channel(0);
                map.insert(id.to_owned(), tx);
                rx
            }
        }
    }

    /// Deployment `id` changed (called after the transaction committed).
    pub fn bump(&self, id: &str) {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = map.get(id) {
            tx.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// Deployments `ids` changed.
    pub fn bump_many<S: AsRef<str>>(&self, ids: impl IntoIterator<Item = S>) {
        for id in ids {
            self.bump(id.as_ref());
        }
    }

    /// Any followed deployment may have changed (a notification without detail): every follower re-reads.
    pub fn bump_all(&self) {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        for tx in map.values() {
            tx.send_modify(|g| *g = g.wrapping_add(1));
        }
    }

    /// How many deployments are followed (for tests and metrics).
    pub fn followed(&self) -> usize {
        let map = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        map.values().filter(|tx| tx.receiver_count() > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn changed_now(rx: &mut Subscription) -> bool {
        tokio::time::timeout(Duration::from_millis(20), rx.changed())
            .await
            .is_ok_and(|r| r.is_ok())
    }

    #[tokio::test]
    async fn many_bumps_wake_a_slow_follower_once() {
        let c = Changes::new();
        let mut rx = c.subscribe("d-1");
        for _ in 0..100 {
            c.bump("d-1");
        }
        assert!(changed_now(&mut rx).await, "a bump wakes the follower");
        assert_eq!(
            *rx.borrow_and_update(),
            100,
            "it sees the latest generation"
        );
        assert!(
            !changed_now(&mut rx).await,
            "no backlog: one wake for 100 bumps"
        );
    }

    #[tokio::test]
    async fn a_bump_wakes_only_that_deployment_s_followers() {
        let c = Changes::new();
        let mut a = c.subscribe("d-1");
        let mut a2 = c.subscribe("d-1");
        let mut b = c.subscribe("d-2");
        c.bump("d-1");
        assert!(changed_now(&mut a).await);
        assert!(changed_now(&mut a2).await);
        assert!(!changed_now(&mut b).await);
        c.bump_many(["d-2"]);
        assert!(changed_now(&mut b).await);
        c.bump_all();
        assert!(changed_now(&mut a).await && changed_now(&mut b).await);
    }

    #[tokio::test]
    async fn a_bump_before_anyone_follows_is_dropped_and_gone_followers_are_forgotten() {
        let c = Changes::new();
        c.bump("d-1");
        let mut rx = c.subscribe("d-1");
        assert!(
            !changed_now(&mut rx).await,
            "subscribing starts from the current state"
        );
        assert_eq!(c.followed(), 1);
        drop(rx);
        assert_eq!(c.followed(), 0);
        let _other = c.subscribe("d-2");
        assert_eq!(c.channels.lock().map(|m| m.len()).unwrap_or(0), 1);
    }
}
