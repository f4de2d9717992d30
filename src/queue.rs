//! A queue between threads, bounded or not: what std's channels did for the
//! pipeline, the buffer ring, the Swift uploader and a child's output, with
//! a fraction of their code. std's channel brings the code of all three of
//! its flavours for every element type sent through one (about 8 KB each),
//! and the binary's budget is counted in kilobytes. A mutex, two condition
//! variables, and ends that count themselves: a side left alone wakes and
//! learns it, as with std's channels, which is how a pipeline that fails at
//! one end stops at the other.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Shared<T> {
    state: Mutex<State<T>>,
    /// Signalled when an item comes, or the last sender goes.
    filled: Condvar,
    /// Signalled when an item is taken, or the receiver goes.
    emptied: Condvar,
    capacity: usize,
}

struct State<T> {
    items: VecDeque<T>,
    senders: usize,
    receiver: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Nothing is left half done under the lock: a panic elsewhere
        // leaves the queue usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct Sender<T>(Arc<Shared<T>>);

pub struct Receiver<T>(Arc<Shared<T>>);

/// A queue of at most `capacity` items (at least one).
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            senders: 1,
            receiver: true,
        }),
        filled: Condvar::new(),
        emptied: Condvar::new(),
        capacity: capacity.max(1),
    });
    (Sender(shared.clone()), Receiver(shared))
}

/// A queue with no bound but memory.
pub fn unbounded<T>() -> (Sender<T>, Receiver<T>) {
    bounded(usize::MAX)
}

impl<T> Sender<T> {
    /// Queue `item`, waiting for room; the item back once the receiver is
    /// gone.
    pub fn send(&self, item: T) -> Result<(), T> {
        let mut state = self.0.lock();
        while state.receiver && state.items.len() >= self.0.capacity {
            state = self
                .0
                .emptied
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        self.put(state, item)
    }

    /// Queue `item` if there is room now.
    pub fn try_send(&self, item: T) -> Result<(), T> {
        let state = self.0.lock();
        match state.items.len() < self.0.capacity {
            true => self.put(state, item),
            false => Err(item),
        }
    }

    fn put(&self, mut state: MutexGuard<'_, State<T>>, item: T) -> Result<(), T> {
        if !state.receiver {
            return Err(item);
        }
        state.items.push_back(item);
        self.0.filled.notify_one();
        Ok(())
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Sender<T> {
        self.0.lock().senders += 1;
        Sender(self.0.clone())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.senders -= 1;
        if state.senders == 0 {
            self.0.filled.notify_all();
        }
    }
}

impl<T> Receiver<T> {
    /// The next item, waiting for one; `None` once every sender is gone
    /// and nothing is left.
    pub fn recv(&self) -> Option<T> {
        self.recv_until(None)
    }

    /// The same, waiting at most `wait`.
    pub fn recv_timeout(&self, wait: Duration) -> Option<T> {
        self.recv_until(Some(Instant::now() + wait))
    }

    fn recv_until(&self, deadline: Option<Instant>) -> Option<T> {
        let mut state = self.0.lock();
        loop {
            if let Some(item) = state.items.pop_front() {
                self.0.emptied.notify_one();
                return Some(item);
            }
            if state.senders == 0 {
                return None;
            }
            state = match deadline {
                None => self.0.filled.wait(state).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(Instant::now())?;
                    let waited = self.0.filled.wait_timeout(state, left);
                    waited.unwrap_or_else(|e| e.into_inner()).0
                }
            };
        }
    }
}

impl<T> Iterator for Receiver<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.recv()
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.receiver = false;
        // What is left is the receiver's to drop, not the senders'.
        let left = std::mem::take(&mut state.items);
        drop(state);
        self.0.emptied.notify_all();
        drop(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn items_come_in_order_and_the_end_when_the_senders_go() {
        let (tx, rx) = bounded(2);
        let tx2 = tx.clone();
        let sending = thread::spawn(move || {
            for i in 0..100 {
                tx.send(i).unwrap();
            }
        });
        drop(tx2);
        let got: Vec<i32> = rx.collect();
        sending.join().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_full_queue_makes_the_sender_wait_and_a_gone_receiver_frees_it() {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        assert_eq!(tx.try_send(2), Err(2), "full");
        let waiting = thread::spawn(move || tx.send(3));
        thread::sleep(Duration::from_millis(50));
        assert!(!waiting.is_finished(), "it waits for room");
        drop(rx);
        assert_eq!(waiting.join().unwrap(), Err(3), "the receiver is gone");
    }

    #[test]
    fn a_receiver_waits_for_an_item_or_its_time() {
        let (tx, rx) = unbounded::<u8>();
        assert_eq!(rx.recv_timeout(Duration::from_millis(20)), None);
        let later = thread::spawn(move || {
            thread::sleep(Duration::from_millis(30));
            tx.send(7).unwrap();
        });
        assert_eq!(rx.recv(), Some(7));
        later.join().unwrap();
        assert_eq!(rx.recv(), None, "every sender is gone");
    }
}
