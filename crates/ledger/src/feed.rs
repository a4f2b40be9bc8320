//! The commit feed: how readers of the log (views, exports, cosigning,
//! queries) learn that blocks were committed, without going through the
//! writer. The committer publishes each new log size; readers wait for a
//! size beyond the one they have read. Closing the feed tells every reader
//! to return.

use crate::ledger::Store;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Published log sizes, and whether the feed is closed.
#[derive(Debug, Default)]
pub struct CommitFeed {
    /// Log size last published, and whether the feed is closed.
    state: Mutex<(u64, bool)>,
    changed: Condvar,
}

impl CommitFeed {
    /// Tells readers the log now holds `size` entries.
    pub fn publish(&self, size: u64) {
        self.update(|s| s.0 = s.0.max(size));
    }

    /// Tells readers to return: the writer is stopping.
    pub fn close(&self) {
        self.update(|s| s.1 = true);
    }

    fn update(&self, f: impl FnOnce(&mut (u64, bool))) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut state);
        self.changed.notify_all();
    }

    /// Waits until the log holds more than `size` entries, or `timeout`
    /// passes. `None` once the feed is closed: readers then return.
    pub fn wait_beyond(&self, size: u64, timeout: Duration) -> Option<u64> {
        let guard = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (guard, _) = self
            .changed
            .wait_timeout_while(guard, timeout, |(s, closed)| *s <= size && !*closed)
            .unwrap_or_else(|p| p.into_inner());
        (!guard.1).then_some(guard.0)
    }
}

/// The threads that follow the log: each gets the store and the feed, and
/// returns once [`CommitFeed::wait_beyond`] says the feed is closed.
/// [`Followers::stop`] (or dropping) closes the feed and joins them, so no
/// follower keeps the ledger open.
pub struct Followers {
    store: Arc<Store>,
    feed: Arc<CommitFeed>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Followers {
    /// Followers of `store`'s log, woken by `feed`.
    pub fn new(store: Arc<Store>, feed: Arc<CommitFeed>) -> Self {
        Followers {
            store,
            feed,
            threads: Mutex::default(),
        }
    }

    /// The store the followers read.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The feed the followers wait on.
    pub fn feed(&self) -> &Arc<CommitFeed> {
        &self.feed
    }

    /// Runs `follow` on a thread named `name`.
    pub fn spawn(
        &self,
        name: &str,
        follow: impl FnOnce(Arc<Store>, Arc<CommitFeed>) + Send + 'static,
    ) -> std::io::Result<()> {
        let (store, feed) = (self.store.clone(), self.feed.clone());
        let handle = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || follow(store, feed))?;
        self.threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(handle);
        Ok(())
    }

    /// Closes the feed and waits for every follower to return.
    pub fn stop(&self) {
        self.feed.close();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Followers {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_reader_wakes_on_a_larger_size_and_returns_when_closed() {
        let feed = Arc::new(CommitFeed::default());
        assert_eq!(feed.wait_beyond(0, Duration::from_millis(1)), Some(0));
        let f = feed.clone();
        let reader = std::thread::spawn(move || f.wait_beyond(5, Duration::from_secs(30)));
        feed.publish(3);
        feed.publish(7);
        assert_eq!(reader.join().unwrap(), Some(7));
        // A smaller size never moves the feed back.
        feed.publish(2);
        assert_eq!(feed.wait_beyond(6, Duration::from_millis(1)), Some(7));
        feed.close();
        assert_eq!(feed.wait_beyond(100, Duration::from_secs(30)), None);
    }
}
