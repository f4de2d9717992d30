//! When the archiver was behind the primary. Each command is stamped when it
//! is received, and a replay to a moment applies every command stamped up
//! to it: that is the primary's data at that moment only if by then the
//! archiver had received all the primary had done. While it is behind
//! (taking in what a gap or a full resync left in the primary's buffers, or
//! held up while a burst is stored) commands arrive late and are stamped
//! late, and a replay to a moment then would lack writes made before it.
//! The reader sees when it is behind (`Watch`), each chunk's record carries
//! the intervals of its session so far (`Intervals`, `ArchivePlace::behind`),
//! and `windows` leaves them out of the moments a window holds (`held`).

use std::sync::Mutex;

/// The intervals a record carries at most: past that, the two closest are
/// made one, which leaves out more moments, never fewer.
pub const MAX_INTERVALS: usize = 256;
/// How long the reader may be away from the socket (splitting what it
/// read, queueing it) before what arrived meanwhile counts as late.
pub const SLACK_MICROS: u64 = 20_000;
/// A read this large may have left bytes the socket held already (its
/// receive buffer may be no larger than the read, and a full one stops
/// the primary sending).
pub const DRAINED_BELOW: usize = 64 * 1024;

/// The reader's view: whether, at each read, everything the primary had
/// sent was in.
pub struct Watch {
    /// Stream bytes still to read before the primary's offset taken as the
    /// session began is reached: what it had done by then is not all in.
    to_catch_up: u64,
    /// The moment from which the archiver is behind, while it is.
    since: Option<u64>,
    /// The read before: its stamp, and whether it was caught up.
    last: Option<(u64, bool)>,
    /// Intervals ended since the last `seen` (two or more as one).
    ended: Option<(u64, u64)>,
    /// The interval going on began, or went on, before the primary's
    /// offset at the session's start was reached: what it lacks may be
    /// older than the interval is long, so it is kept however short.
    catching_up: bool,
}

/// One read, as the reader saw it.
pub struct Read {
    /// When it returned (µs since the epoch): the stamp of what it read.
    pub at: u64,
    /// When it began, just before the socket was asked what it held.
    pub began: u64,
    pub n: usize,
    /// As it began the socket held nothing, nor a buffer, nor half a
    /// command: all the primary had sent by `began` was in.
    pub empty_at_start: bool,
    /// How long, from `began` to `at`, the reader waited for a core (a
    /// busy host preempted it): what it read may have arrived that long
    /// before `at`, and what arrived after its bytes were taken was not in
    /// at `at`.
    pub preempted_micros: u64,
    /// When the kernel received the newest byte it took from the socket
    /// (`None` if it read from a buffer, or the kernel does not say): a
    /// read that returned long after, though it began no earlier, was held
    /// up in a way the run queue does not count (the reader stopped or
    /// frozen, its CPU taken by the hypervisor, a lock).
    pub newest_arrival: Option<u64>,
    /// It found the end of the stream (the primary closed it: all it sent
    /// was in).
    pub eof: bool,
    /// Nothing was left unread in buffers, nor half a command, as it began.
    pub clean_at_start: bool,
    /// Nor as it returned, and it read less than `DRAINED_BELOW`.
    pub drained: bool,
}

/// What the reads up to a batch saw: an interval behind they ended, and
/// since when the archiver is behind, if it still is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub ended: Option<(u64, u64)>,
    pub behind_since: Option<u64>,
}

impl Watch {
    pub fn new(to_catch_up: u64) -> Watch {
        Watch {
            to_catch_up,
            since: None,
            last: None,
            ended: None,
            catching_up: false,
        }
    }

    pub fn read(&mut self, read: Read) {
        if self.to_catch_up > 0 {
            self.catching_up = true;
        }
        let last_at = self.last.map(|(at, _)| at);
        // On an empty socket nothing can have arrived before the read
        // began: a stamp that says so is of a clock stepped back, or not
        // the wall clock at all, and is not believed.
        let newest = read
            .newest_arrival
            .filter(|&arrived| arrived >= read.began || !read.empty_at_start)
            .map(|arrived| arrived.max(read.began).min(read.at));
        // Returned long after its newest byte came: what came after it
        // took them is not in, whether it waited for a core or was
        // stopped. The run queue explains the hold-up only if it was all
        // after that byte, which schedstat does not say: a wait before it
        // (more bytes coming meanwhile) and a stop as the read returns look
        // the same.
        let held_up = newest.is_some_and(|newest| read.at - newest > SLACK_MICROS);
        let held_past_run_queue = newest.is_some_and(|newest| {
            read.at - newest > read.preempted_micros.saturating_add(SLACK_MICROS)
        });
        let preempted = read.preempted_micros > SLACK_MICROS;
        let stalled = held_up || preempted;
        let nothing_came = read.empty_at_start || (read.eof && read.clean_at_start);
        if nothing_came && self.to_catch_up == 0 {
            // Nothing came after the read before (it would be in the
            // socket), or the primary ended the stream: all that had come
            // was in as that one returned.
            if let Some(from) = self.since.take() {
                self.end(from, last_at.unwrap_or(read.began));
            }
            if stalled {
                // What it read came after it began. The first came as the
                // reader woke; from then to taking the newest it waited for
                // a core at most as long as the run queue says (and the
                // slack, for the rest of the read): a stop after, as the
                // read returned, is not counted there, so this is reckoned
                // from the newest byte, not from the return. Held up past
                // all the run queue explains, the reader cannot tell when
                // the first came.
                let earliest = match held_past_run_queue {
                    true => read.began,
                    false => newest
                        .unwrap_or(read.at)
                        .saturating_sub(read.preempted_micros + SLACK_MICROS)
                        .max(read.began),
                };
                self.since.get_or_insert(earliest);
            }
        } else if self
            .last
            .is_none_or(|(at, caught_up)| !caught_up || read.at.saturating_sub(at) > SLACK_MICROS)
        {
            // What it returned was there as it began, and may have arrived
            // at any time since the read before, if that one left bytes
            // unread or this one returned long after it (the reader away,
            // or preempted).
            self.since.get_or_insert(last_at.unwrap_or(read.at));
        }
        self.to_catch_up = self.to_catch_up.saturating_sub(read.n as u64);
        // A read held up after it took the socket's bytes returned late:
        // what came meanwhile is not in.
        let caught_up = read.drained && self.to_catch_up == 0 && !stalled;
        match caught_up {
            true => {
                if let Some(from) = self.since.take() {
                    self.end(from, read.at);
                }
            }
            // What it left unread arrived before it returned.
            false => {
                self.since.get_or_insert(read.at);
            }
        }
        if self.since.is_none() {
            self.catching_up = false;
        }
        self.last = Some((read.at, caught_up));
    }

    fn end(&mut self, from: u64, to: u64) {
        // Commands stamped in an interval no longer than the slack arrived
        // at most that late (a command split over two reads, some 20 µs
        // apart when the primary writes it across two of its 16 KB
        // buffers): within the slack a reader away is allowed, and not
        // worth cutting a span, nor one of the intervals a record holds.
        let short = to.saturating_sub(from) <= SLACK_MICROS && !self.catching_up;
        self.catching_up = false;
        if to <= from || short {
            return;
        }
        self.ended = Some(match self.ended {
            Some((earlier, _)) => (earlier, to),
            None => (from, to),
        });
    }

    /// The primary's offset as the session began is reached.
    pub fn offset_reached(&self) -> bool {
        self.to_catch_up == 0
    }

    /// What the reads since the last call saw, for the batch they made.
    pub fn seen(&mut self) -> Seen {
        Seen {
            ended: self.ended.take(),
            behind_since: self.since,
        }
    }
}

/// Whether the reader is in a read that began on a socket that held
/// nothing (nor a buffer, nor half a command, the primary's offset
/// reached), and the stamp of the read before: the storer, storing a chunk
/// meanwhile, need not wait for the read to return to know that all that
/// had come by then was in.
#[derive(Default)]
pub struct Waiting(Mutex<Option<u64>>);

impl Waiting {
    /// A read begins; `empty`: as above; `stamp_before`: of the read before.
    pub fn begin(&self, empty: bool, stamp_before: u64) {
        *self.lock() = empty.then_some(stamp_before);
    }

    pub fn end(&self) {
        *self.lock() = None;
    }

    /// Whether the reader is in a read that began on an empty socket since
    /// the read stamped `at`.
    pub fn since(&self, at: u64) -> bool {
        *self.lock() == Some(at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How long this thread has waited for a core, from the scheduler's
/// statistics (`/proc/thread-self/schedstat`, its second field, in ns):
/// on a busy host the reader may wait long for one, and what it reads then
/// is stamped late.
pub struct RunQueue(Option<std::fs::File>);

impl RunQueue {
    pub fn of_this_thread() -> RunQueue {
        const STATS: &str = "/proc/thread-self/schedstat";
        match std::fs::File::open(STATS) {
            Ok(file) => RunQueue(Some(file)),
            Err(e) => {
                static SAID: std::sync::Once = std::sync::Once::new();
                SAID.call_once(|| {
                    log::warn!(
                        "{STATS}: {e}; the archiver cannot tell when this host keeps it from a core, and a TIME is then exact only to within as long"
                    )
                });
                RunQueue(None)
            }
        }
    }

    /// The µs waited so far (0 when the kernel cannot say).
    pub fn waited_micros(&self) -> u64 {
        use std::os::unix::fs::FileExt;
        let Some(file) = &self.0 else { return 0 };
        let mut stats = [0u8; 96];
        let n = file.read_at(&mut stats, 0).unwrap_or(0);
        std::str::from_utf8(&stats[..n])
            .ok()
            .and_then(|s| s.split_ascii_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |ns| ns / 1000)
    }
}

/// The intervals of one session when the archiver was behind, each from
/// (included) to (left out) in µs since the epoch, in order.
#[derive(Default)]
pub struct Intervals {
    closed: Vec<(u64, u64)>,
    open: Option<u64>,
    /// Past the millisecond the last record's span ended on (rounded up,
    /// as `held` does), or where the interval it recorded open began: an
    /// interval not in that record begins no earlier, so the moment shown
    /// stays held. What it leaves out came within a millisecond, well
    /// within the slack.
    shown: u64,
}

impl Intervals {
    /// What the reads of a batch saw.
    pub fn saw(&mut self, seen: Seen) {
        if let Some((from, to)) = seen.ended {
            self.close(from.max(self.shown), to);
        }
        // A batch queued before the storer saw the reader catch up (stamped
        // like the chunk it closed the interval at) tells of the reads
        // before: behind again, if at all, only from where that one ended.
        let caught_up = self.closed.last().map_or(0, |last| last.1);
        self.open = seen
            .behind_since
            .map(|from| from.max(caught_up).max(self.shown));
    }

    /// All that had come was in as the read stamped `at` returned.
    pub fn caught_up_at(&mut self, at: u64) {
        if let Some(from) = self.open.take() {
            self.close(from, at);
        }
    }

    fn close(&mut self, from: u64, to: u64) {
        if to <= from {
            return;
        }
        match self.closed.last_mut() {
            Some(last) if last.1 >= from => last.1 = last.1.max(to),
            _ => self.closed.push((from, to)),
        }
        // Each chunk starts a new session past `MAX_INTERVALS` (`for_chunk`):
        // only a chunk with that many of its own comes near this bound.
        merge_closest(&mut self.closed, 4 * MAX_INTERVALS);
    }

    /// The intervals the record of a chunk of commands stamped `first` to
    /// `last_at` carries, and whether the chunk starts a new session to
    /// keep them to `MAX_INTERVALS`. The records stored keep what they
    /// carry, so a moment `timeline` showed as held stays held (merging
    /// the closest would take held moments away); the new session's list
    /// begins with this chunk, and the moments between the two sessions'
    /// chunks are not held.
    pub fn for_chunk(&mut self, first: u64, last_at: u64) -> (Vec<(u64, u64)>, bool) {
        let (recorded, new_session) = self.recorded(first, last_at);
        // An interval recorded open goes on from where it was recorded.
        self.shown = match self.open.filter(|from| *from <= last_at) {
            Some(from) => from,
            None => last_at
                .div_ceil(1000)
                .saturating_mul(1000)
                .saturating_add(1),
        };
        (recorded, new_session)
    }

    fn recorded(&mut self, first: u64, last_at: u64) -> (Vec<(u64, u64)>, bool) {
        let all = self.as_of(last_at);
        if all.len() <= MAX_INTERVALS {
            return (all, false);
        }
        self.closed.retain(|&(_, to)| to > first);
        if let Some(reaching_in) = self.closed.first_mut() {
            reaching_in.0 = reaching_in.0.max(first);
        }
        self.open = self.open.map(|from| from.max(first));
        let mut own = self.as_of(last_at);
        merge_closest(&mut own, MAX_INTERVALS);
        (own, true)
    }

    /// The intervals as a chunk whose last batch is stamped `last_at`
    /// records them: one still open reaches past it.
    pub fn as_of(&self, last_at: u64) -> Vec<(u64, u64)> {
        let mut all = self.closed.clone();
        // One that began after the chunk's last command leaves it whole.
        if let Some(from) = self.open.filter(|from| *from <= last_at) {
            all.push((from, last_at + 1));
        }
        all
    }
}

/// Make the two closest of `intervals` one until at most `most` are left:
/// more is left out, never less.
fn merge_closest(intervals: &mut Vec<(u64, u64)>, most: usize) {
    while intervals.len() > most.max(1) {
        let i = (0..intervals.len() - 1)
            .min_by_key(|&i| intervals[i + 1].0 - intervals[i].1)
            .expect("two or more");
        intervals[i].1 = intervals.remove(i + 1).1;
    }
}

/// The moments a session holds: its commands' stamps from `first` to
/// `last`, less the intervals it was behind, rounded to the millisecond as
/// `timeline` shows them. A start is rounded up (the moment copied must
/// take in the commands stamped there); so is the end of the session (no
/// command came after its last until the next chunk), but not an end where
/// the archiver fell behind, which is rounded down.
pub fn held(first: u64, last: u64, behind: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let ceil = |micros: u64| micros.div_ceil(1000) * 1000;
    let mut spans = Vec::new();
    let mut from = first;
    for &(behind_from, behind_to) in behind {
        if behind_from > last {
            break;
        }
        if behind_to <= from {
            continue;
        }
        if behind_from > from {
            let to = (behind_from - 1) / 1000 * 1000;
            if ceil(from) <= to {
                spans.push((ceil(from), to));
            }
        }
        from = from.max(behind_to);
    }
    if from <= last {
        spans.push((ceil(from), ceil(last)));
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read as the reader sees it: from an empty socket, its bytes
    /// arriving 10 µs after it began, all taken.
    fn read(at: u64, n: usize) -> Read {
        Read {
            at,
            began: at - 10,
            n,
            empty_at_start: true,
            preempted_micros: 0,
            newest_arrival: Some(at - 5),
            eof: false,
            clean_at_start: true,
            drained: true,
        }
    }

    /// A read that found bytes in the socket as it began.
    fn read_of_bytes_there(at: u64, n: usize) -> Read {
        Read {
            empty_at_start: false,
            ..read(at, n)
        }
    }

    #[test]
    fn a_reader_that_keeps_up_is_never_behind_after_its_first_read() {
        let mut watch = Watch::new(0);
        watch.read(read(1_000, 100));
        assert_eq!(watch.seen().behind_since, None);
        for at in [2_000, 50_000, 900_000] {
            watch.read(read(at, 100));
            let seen = watch.seen();
            assert_eq!((seen.ended, seen.behind_since), (None, None), "at {at}");
        }
    }

    #[test]
    fn a_reader_away_too_long_or_leaving_bytes_is_behind_until_it_drains() {
        let mut watch = Watch::new(0);
        watch.read(read(1_000, 100));
        watch.seen();
        // Away too long (a full queue): what it read arrived any time since.
        watch.read(Read {
            drained: false,
            ..read_of_bytes_there(90_000, 100)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: Some(1_000)
            }
        );
        watch.read(Read {
            drained: false,
            ..read_of_bytes_there(95_000, DRAINED_BELOW)
        });
        watch.read(read_of_bytes_there(100_000, 10));
        assert_eq!(
            watch.seen(),
            Seen {
                ended: Some((1_000, 100_000)),
                behind_since: None
            }
        );
        watch.read(read(110_000, 10));
        assert_eq!(watch.seen().behind_since, None);
        // A read that left bytes is behind from its own stamp.
        watch.read(Read {
            drained: false,
            ..read(120_000, 10)
        });
        assert_eq!(watch.seen().behind_since, Some(120_000));
    }

    #[test]
    fn a_read_that_found_the_socket_empty_shows_the_one_before_caught_up() {
        let mut watch = Watch::new(0);
        watch.read(Read {
            drained: false,
            ..read(1_000, DRAINED_BELOW)
        });
        // It waited 40 ms for the next command, which it read half of.
        watch.read(Read {
            drained: false,
            ..read(50_000, 10)
        });
        // Its rest came 100 µs later: within the slack, no interval.
        watch.read(read_of_bytes_there(50_100, 10));
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: None
            },
            "a half command whose rest comes within the slack"
        );
        watch.read(Read {
            drained: false,
            ..read(50_200, 10)
        });
        watch.read(read_of_bytes_there(80_000, 10));
        assert_eq!(
            watch.seen(),
            Seen {
                ended: Some((50_200, 80_000)),
                behind_since: None
            },
            "behind for the half command whose rest came past the slack"
        );
        // Not from a socket that held bytes as it began, however long
        // the read took.
        watch.read(Read {
            drained: false,
            ..read(160_000, 10)
        });
        watch.read(Read {
            began: 160_010,
            ..read_of_bytes_there(210_000, 10)
        });
        assert_eq!(watch.seen().ended, Some((160_000, 210_000)));
        // The end of the stream, found at once: all was in at the read
        // before, which left nothing buffered.
        watch.read(Read {
            drained: false,
            ..read(220_000, DRAINED_BELOW)
        });
        watch.seen();
        watch.read(Read {
            eof: true,
            drained: false,
            ..read(220_050, 0)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: Some(220_050)
            },
            "caught up at the read before"
        );
        let mut intervals = Intervals::default();
        intervals.saw(watch.seen());
        assert_eq!(
            intervals.as_of(220_000),
            [],
            "nothing after the chunk's last"
        );
    }

    #[test]
    fn a_session_is_behind_until_the_primarys_offset_at_its_start_is_read() {
        let mut watch = Watch::new(1_000);
        watch.read(read(1_000, 600));
        assert_eq!(watch.seen().behind_since, Some(1_000));
        // An empty socket does not end it before the offset is reached.
        watch.read(read(50_000, 400));
        assert_eq!(
            watch.seen(),
            Seen {
                ended: Some((1_000, 50_000)),
                behind_since: None
            }
        );
    }

    #[test]
    fn a_short_interval_is_kept_while_the_offset_is_not_reached() {
        let mut watch = Watch::new(1_000);
        watch.read(read(1_000, 600));
        watch.read(read(1_100, 400));
        assert_eq!(
            watch.seen().ended,
            Some((1_000, 1_100)),
            "what it lacks may be older than the interval"
        );
        // Once reached, one as short is within the slack.
        watch.read(Read {
            drained: false,
            ..read(2_000, 10)
        });
        watch.read(read(2_100, 10));
        assert_eq!(watch.seen().ended, None);
    }

    /// A read that began on an empty socket, preempted while it waited
    /// for its bytes or after it took them: they may have come as long
    /// before the newest it took (or, the kernel not saying, before it
    /// returned) as it waited for a core, and it is not caught up as it
    /// returns. The read before is.
    #[test]
    fn a_read_preempted_is_behind_from_when_its_bytes_may_have_come() {
        let mut watch = Watch::new(0);
        watch.read(read(1_000_000, 100));
        watch.seen();
        watch.read(Read {
            began: 1_010_000,
            preempted_micros: 60_000,
            ..read(1_100_000, 100)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: Some(1_100_000 - 5 - 60_000 - SLACK_MICROS)
            }
        );
        watch.read(read(1_200_000, 10));
        assert_eq!(
            watch.seen(),
            Seen {
                ended: Some((1_019_995, 1_100_000)),
                behind_since: None
            },
            "caught up as the read after began on an empty socket"
        );
        // Its bytes came at once: not before it began.
        watch.read(Read {
            began: 1_290_000,
            preempted_micros: 60_000,
            ..read(1_300_000, 10)
        });
        assert_eq!(watch.seen().behind_since, Some(1_290_000));
        watch.read(read(1_400_000, 10));
        watch.seen();
        // Bytes in the socket as it began: since the read before.
        watch.read(Read {
            preempted_micros: SLACK_MICROS + 1,
            ..read_of_bytes_there(1_430_000, 10)
        });
        assert_eq!(watch.seen().behind_since, Some(1_400_000));
        // Preempted no longer than the slack: within it.
        watch.read(read(1_500_000, 10));
        watch.seen();
        watch.read(Read {
            preempted_micros: SLACK_MICROS,
            ..read(1_600_000, 10)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: None
            }
        );
    }

    /// A read that began on an empty socket and returned long after its
    /// newest byte was received, not waiting for a core (stopped, frozen,
    /// its CPU taken by the hypervisor): its bytes may have come any time
    /// since it began, and what came after it took them is not in.
    #[test]
    fn a_read_held_up_after_its_bytes_came_is_behind_from_when_it_began() {
        let mut watch = Watch::new(0);
        watch.read(read(1_000_000, 100));
        watch.seen();
        watch.read(Read {
            began: 1_010_000,
            newest_arrival: Some(1_015_000),
            ..read(1_100_000, 100)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: Some(1_010_000)
            }
        );
        watch.read(read(1_200_000, 10));
        assert_eq!(watch.seen().ended, Some((1_010_000, 1_100_000)));
        // From a socket that held bytes: behind since the read before.
        watch.read(Read {
            began: 1_210_000,
            newest_arrival: Some(1_150_000),
            ..read_of_bytes_there(1_240_000, 10)
        });
        assert_eq!(watch.seen().behind_since, Some(1_200_000));
        watch.read(read(1_300_000, 10));
        watch.seen();
        // Its bytes there long before it began (the reader away, storing):
        // held up no longer than the read took, and caught up as it
        // returned.
        watch.read(Read {
            began: 1_390_000,
            newest_arrival: Some(1_310_000),
            ..read_of_bytes_there(1_390_100, 10)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: Some((1_300_000, 1_390_100)),
                behind_since: None
            }
        );
        // Woken by its bytes and kept 25 ms from a core (the run queue):
        // behind from as long before its newest byte (and the slack); the
        // moments before they came stay held.
        watch.read(read(1_400_000, 10));
        watch.seen();
        watch.read(Read {
            began: 1_400_100,
            newest_arrival: Some(1_460_000),
            preempted_micros: 25_000,
            ..read(1_485_000, 10)
        });
        assert_eq!(watch.seen().behind_since, Some(1_415_000));
        watch.read(read(1_495_000, 10));
        assert_eq!(watch.seen().ended, Some((1_415_000, 1_485_000)));
        // Within the slack, the kernel not saying, or saying what cannot
        // be (bytes on an empty socket before the read began): not held up.
        watch.read(Read {
            began: 1_500_000,
            newest_arrival: Some(1_501_000),
            ..read(1_501_000 + SLACK_MICROS, 10)
        });
        watch.read(Read {
            began: 1_600_000,
            newest_arrival: None,
            ..read(1_700_000, 10)
        });
        watch.read(Read {
            began: 1_700_100,
            newest_arrival: Some(1_000),
            ..read(1_750_000, 10)
        });
        assert_eq!(
            watch.seen(),
            Seen {
                ended: None,
                behind_since: None
            }
        );
    }

    /// A reader woken by the primary's first byte (at `first`) waits for a
    /// core while more bytes come (the run queue, which schedstat counts),
    /// takes them, and is stopped as the read returns (a SIGSTOP or a
    /// freeze sent while it waited lands there: signals are taken on the
    /// way back from the call). The run-queue wait came before its newest
    /// byte, not after: it does not explain the time from that byte to the
    /// read's return, and the stop must not hide behind it. The first
    /// byte is stamped with the read, so no moment more than the slack
    /// after it may be held.
    #[test]
    fn a_stop_after_a_run_queue_wait_before_the_newest_byte_is_not_hidden() {
        // Waited 200 ms for a core (bytes coming till 10 ms before it got
        // one), then stopped 200 ms.
        let mut watch = Watch::new(0);
        watch.read(read(1_000_000, 10));
        watch.seen();
        let first = 1_500_000;
        watch.read(Read {
            began: 1_000_100,
            newest_arrival: Some(first + 190_000),
            preempted_micros: 200_000,
            ..read(first + 400_000, 10)
        });
        let since = watch.seen().behind_since;
        assert!(
            since.is_some_and(|since| since <= first + SLACK_MICROS),
            "behind since {since:?}: moments up to it held, though the byte received at {first} is stamped {}",
            first + 400_000
        );
        // Waited 20 ms (bytes coming all the while), then stopped 40 ms:
        // what came in the stop waits in the socket, and the next read
        // takes it at once.
        let mut watch = Watch::new(0);
        watch.read(read(1_000_000, 10));
        watch.seen();
        let first = 1_500_000;
        watch.read(Read {
            began: 1_000_100,
            newest_arrival: Some(first + 20_000),
            preempted_micros: SLACK_MICROS,
            ..read(first + 60_000, 10)
        });
        watch.seen();
        watch.read(read_of_bytes_there(first + 60_500, 10));
        let seen = watch.seen();
        assert!(
            seen.behind_since.is_some_and(|since| since <= first + SLACK_MICROS)
                || seen
                    .ended
                    .is_some_and(|(from, to)| from <= first + SLACK_MICROS && to >= first + 60_000),
            "{seen:?}: the moments up to {} held, though the byte received at {first} is stamped then",
            first + 60_000
        );
    }

    #[test]
    fn a_reader_in_a_read_that_began_on_an_empty_socket_is_seen_at_once() {
        let waiting = Waiting::default();
        waiting.begin(true, 5_000);
        assert!(waiting.since(5_000));
        assert!(!waiting.since(4_000), "another read's stamp");
        waiting.end();
        assert!(!waiting.since(5_000));
        waiting.begin(false, 6_000);
        assert!(
            !waiting.since(6_000),
            "a read that began with bytes to read"
        );
        let mut intervals = Intervals::default();
        intervals.saw(Seen {
            ended: None,
            behind_since: Some(1_000),
        });
        intervals.caught_up_at(6_000);
        assert_eq!(intervals.as_of(6_000), [(1_000, 6_000)]);
    }

    #[test]
    fn intervals_close_merge_and_stay_bounded() {
        let ended = |from, to| Seen {
            ended: Some((from, to)),
            behind_since: None,
        };
        let mut intervals = Intervals::default();
        intervals.saw(ended(5, 5));
        assert_eq!(intervals.as_of(10), [], "an empty interval is none");
        intervals.saw(Seen {
            ended: None,
            behind_since: Some(10),
        });
        assert_eq!(intervals.as_of(20), [(10, 21)]);
        intervals.saw(ended(10, 30));
        assert_eq!(intervals.as_of(40), [(10, 30)]);
        intervals.saw(ended(25, 35));
        assert_eq!(intervals.as_of(40), [(10, 35)], "overlapping are one");
        assert_eq!(intervals.for_chunk(20, 40), (vec![(10, 35)], false));

        // Past the bound the next chunk starts a session: the records
        // stored keep theirs, so what was held stays held.
        for i in 0..MAX_INTERVALS as u64 {
            let at = 1_000 + i * 100;
            intervals.saw(ended(at - 10, at));
        }
        intervals.saw(Seen {
            ended: None,
            behind_since: Some(90_000),
        });
        let (own, new_session) = intervals.for_chunk(80_000, 100_000);
        assert!(new_session);
        assert_eq!(own, [(90_000, 100_001)], "only what reaches into it");
        intervals.saw(ended(90_000, 100_500));
        intervals.saw(ended(100_600, 100_700));
        assert_eq!(
            intervals.for_chunk(100_200, 101_000),
            (vec![(90_000, 100_500), (100_600, 100_700)], false),
            "the new session's list goes on"
        );

        // A chunk with more of its own: the closest are made one.
        let mut crowded = Intervals::default();
        for i in 0..MAX_INTERVALS as u64 + 10 {
            let at = 1_000 + i * 100 + (i % 7);
            crowded.saw(ended(at - 10, at));
        }
        let (all, new_session) = crowded.for_chunk(0, u64::MAX - 1);
        assert!(new_session);
        assert_eq!(all.len(), MAX_INTERVALS);
        assert!(all.windows(2).all(|w| w[0].1 < w[1].0));
        let covered = |t: u64| all.iter().any(|(f, to)| (*f..*to).contains(&t));
        for i in 0..MAX_INTERVALS as u64 + 10 {
            let at = 1_000 + i * 100 + (i % 7);
            assert!(covered(at - 10) && covered(at - 1), "merging kept {at}");
        }
    }

    #[test]
    fn the_moments_held_leave_out_the_intervals_behind() {
        // Stamps from 1.0005 s to 9.0002 s, behind from 3.0004 to 4.5 s
        // and from 8.2 s on.
        let behind = [(3_000_400, 4_500_000), (8_200_000, 9_000_201)];
        let spans = held(1_000_500, 9_000_200, &behind);
        assert_eq!(
            spans,
            [(1_001_000, 3_000_000), (4_500_000, 8_199_000)],
            "a start rounds up, an end before falling behind rounds down"
        );
        assert_eq!(held(1_000_500, 9_000_200, &[]), [(1_001_000, 9_001_000)]);
        assert_eq!(
            held(1_000_000, 2_000_000, &[(1_000_000, 1_500_000)]),
            [(1_500_000, 2_000_000)],
            "behind from the session's first command"
        );
        assert_eq!(held(1_000_000, 2_000_000, &[(1_000_000, 2_000_001)]), []);
        assert_eq!(
            held(1_000_000, 2_000_000, &[(500, 900), (2_500_000, 3_000_000)]),
            [(1_000_000, 2_000_000)],
            "intervals outside the session"
        );
    }

    /// Random reads, batches and chunk cuts (the storer seeing the reader
    /// wait now and then): every record a chunk would carry parses (from
    /// before to, in order, not overlapping), a moment a session's record
    /// showed held stays held in its later records, and a session a roll
    /// started holds no moment the unrolled intervals leave out.
    #[test]
    fn random_reads_give_records_that_parse_and_keep_held_moments() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n.max(1)
        };
        let contained = |inner: &[(u64, u64)], outer: &[(u64, u64)]| {
            inner
                .iter()
                .all(|&(a, b)| outer.iter().any(|&(c, d)| c <= a && b <= d))
        };
        let (mut rolls, mut caught) = (0, 0);
        for case in 0..150 {
            let mut watch = Watch::new(rnd(3) * 50_000);
            let mut intervals = Intervals::default();
            let mut shadow = Intervals::default();
            let mut at = 1_000_000_000u64;
            let mut prev_drained = true;
            // Per session: its first stamp, and each chunk's (last, record).
            type Chunk = (u64, Vec<(u64, u64)>);
            let mut sessions: Vec<(u64, Vec<Chunk>)> = Vec::new();
            let mut first: Option<u64> = None;
            let gen = |rnd: &mut dyn FnMut(u64) -> u64, prev_drained: bool| {
                let clean = prev_drained || rnd(2) == 0;
                // The socket may be empty only if the read before took all.
                let empty = clean && prev_drained && rnd(2) == 0;
                let preempted = match rnd(16) {
                    0 => SLACK_MICROS + 1 + rnd(60_000),
                    1 => rnd(SLACK_MICROS),
                    _ => rnd(40),
                };
                let away = match rnd(8) {
                    0 => SLACK_MICROS + rnd(60_000),
                    1 => rnd(SLACK_MICROS),
                    _ => rnd(40),
                };
                let waited = preempted + rnd(3) * rnd(40_000);
                let n = match rnd(6) {
                    0 => DRAINED_BELOW as u64 + rnd(100_000),
                    _ => 1 + rnd(20_000),
                };
                let drained = (n as usize) < DRAINED_BELOW && rnd(4) != 0;
                (clean, empty, preempted, away, waited, n as usize, drained)
            };
            let mut next = gen(&mut rnd, prev_drained);
            let reads = 1000 + rnd(4000);
            for _ in 0..reads {
                let (clean, empty, preempted, away, waited, n, drained) = next;
                // A clock stepped back: the stamp stays (`Reader::run`).
                let began = match rnd(12) {
                    0 => at,
                    _ => at + away,
                };
                if began > at {
                    at = began + waited + rnd(3);
                }
                watch.read(Read {
                    at,
                    began: began.min(at),
                    n,
                    empty_at_start: empty,
                    preempted_micros: preempted,
                    newest_arrival: match rnd(8) {
                        0 => None,
                        1 => Some(at.saturating_sub(rnd(80_000))),
                        _ => Some(at.saturating_sub(rnd(100))),
                    },
                    eof: false,
                    clean_at_start: clean,
                    drained,
                });
                prev_drained = drained;
                let seen = watch.seen();
                intervals.saw(seen);
                shadow.saw(seen);
                first.get_or_insert(at);
                next = gen(&mut rnd, prev_drained);
                if rnd(4) != 0 {
                    continue;
                }
                // The chunk is cut after this batch; the storer may see the
                // reader in a read that began on an empty socket.
                let quiet = next.1 && watch.offset_reached();
                if quiet && rnd(2) == 0 {
                    intervals.caught_up_at(at);
                    shadow.caught_up_at(at);
                    caught += 1;
                }
                let chunk_first = first.take().expect("a batch");
                let (record, new_session) = intervals.for_chunk(chunk_first, at);
                // The unrolled intervals leave the moment shown as held too.
                shadow.shown = intervals.shown;
                assert!(
                    record.iter().all(|&(f, t)| f < t)
                        && record.windows(2).all(|w| w[0].1 <= w[1].0),
                    "case {case}: a record parse_behind refuses: {record:?}"
                );
                assert!(record.len() <= MAX_INTERVALS);
                if new_session {
                    rolls += 1;
                }
                if new_session || sessions.is_empty() {
                    sessions.push((chunk_first, Vec::new()));
                }
                let (session_first, chunks) = sessions.last_mut().expect("one");
                let held_now = held(*session_first, at, &record);
                if let Some((last_before, before)) = chunks.last() {
                    let held_before = held(*session_first, *last_before, before);
                    assert!(
                        contained(&held_before, &held_now),
                        "case {case}: held before {held_before:?} not held now {held_now:?}; last before {last_before} recorded {:?}, now at {at} {:?}", &before[before.len().saturating_sub(3)..], &record[record.len().saturating_sub(3)..]
                    );
                }
                // (Until the unrolled, never cut by a new session, are
                // so many that they merge their closest themselves.)
                let unrolled = held(*session_first, at, &shadow.as_of(at));
                assert!(
                    shadow.closed.len() >= 4 * MAX_INTERVALS || contained(&held_now, &unrolled),
                    "case {case}: held {held_now:?}, the intervals unrolled hold {unrolled:?}"
                );
                chunks.push((at, record));
            }
        }
        assert!(
            rolls > 10 && caught > 100,
            "rolls: {rolls}, caught up: {caught}"
        );
    }

    /// The end of a session's span is rounded up to the millisecond; the
    /// reader then held up past the slack (the queue full while that chunk
    /// is stored) is behind from the stamp of its read before, which the
    /// next chunk's record carries: the moment `timeline` showed as held
    /// is then refused.
    #[test]
    fn the_millisecond_a_chunk_ended_on_stays_held_after_the_reader_was_away() {
        let mut watch = Watch::new(0);
        let mut intervals = Intervals::default();
        watch.read(read(1_000_000, 100));
        intervals.saw(watch.seen());
        watch.read(read(1_000_500, 100));
        intervals.saw(watch.seen());
        let (record, _) = intervals.for_chunk(1_000_000, 1_000_500);
        let shown = held(1_000_000, 1_000_500, &record);
        assert_eq!(shown, [(1_000_000, 1_001_000)]);
        // Held up 90 ms by the queue while that chunk was stored.
        watch.read(read_of_bytes_there(1_100_000, 100));
        intervals.saw(watch.seen());
        let (record, _) = intervals.for_chunk(1_100_000, 1_100_000);
        let later = held(1_000_000, 1_100_000, &record);
        assert!(
            later
                .iter()
                .any(|&(from, to)| from <= 1_001_000 && 1_001_000 <= to),
            "1.001 s was shown held, now {later:?} (behind {record:?})"
        );
    }
}
