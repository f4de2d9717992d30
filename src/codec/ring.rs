//! A fixed set of reusable byte buffers passed between threads. The pipeline
//! takes a buffer before it reads a frame and gives it back once the frame has
//! been written, so at most `count` frames are ever in flight and memory stays
//! flat whatever the size of the backup. It is a bounded channel pre-filled
//! with the buffers: taking blocks while all are in use.
//!
//! Shutdown falls out of channel semantics: once every `Sink` is gone (the
//! consumer failed and returned), `take` stops blocking and returns `None`, so
//! a producer waiting for a buffer can never hang on a dead pipeline.

use crate::queue::{self, Receiver, Sender};

/// Where buffers are taken from. Owned by the one thread that starts frames.
pub struct Source {
    free: Receiver<Vec<u8>>,
}

/// Where buffers are given back. Cheap to clone.
#[derive(Clone)]
pub struct Sink {
    free: Sender<Vec<u8>>,
}

/// Creates `count` buffers of `capacity` bytes each.
pub fn ring(count: usize, capacity: usize) -> (Source, Sink) {
    let (tx, rx) = queue::bounded(count);
    for _ in 0..count {
        tx.try_send(Vec::with_capacity(capacity))
            .expect("the channel has room for every buffer");
    }
    (Source { free: rx }, Sink { free: tx })
}

impl Source {
    /// The next free buffer (empty, with its capacity kept), waiting while all
    /// are in use; `None` once no `Sink` is left and none is free.
    pub fn take(&self) -> Option<Vec<u8>> {
        self.free.recv()
    }
}

impl Sink {
    /// Returns a buffer to the pool. If the source is gone, the pipeline is
    /// shutting down and the buffer is simply freed.
    pub fn give(&self, mut buf: Vec<u8>) {
        buf.clear();
        // Only buffers that came from the pool come back, so it can't be full.
        let _ = self.free.try_send(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn take_blocks_until_a_buffer_comes_back() {
        let (source, sink) = ring(2, 16);
        let a = source.take().unwrap();
        let mut b = source.take().unwrap();
        assert!(a.capacity() >= 16 && b.capacity() >= 16);
        b.extend_from_slice(b"dirty");
        let (done_tx, done_rx) = channel();
        thread::scope(|s| {
            s.spawn(move || {
                let c = source.take().unwrap();
                done_tx.send(c.len()).unwrap();
            });
            // Still blocked: nothing has been given back.
            assert!(done_rx.recv_timeout(Duration::from_millis(50)).is_err());
            sink.give(b);
            assert_eq!(done_rx.recv_timeout(Duration::from_secs(10)).unwrap(), 0);
        });
        drop(a);
    }

    #[test]
    fn take_returns_none_when_every_sink_is_gone() {
        let (source, sink) = ring(1, 8);
        let held = source.take().unwrap();
        thread::scope(|s| {
            let waiter = s.spawn(move || source.take());
            drop(sink);
            assert!(waiter.join().unwrap().is_none());
        });
        drop(held);
    }
}
