//! Page-cache advice for a file read once from start to end (the dump, a
//! stored backup): read ahead, and let the kernel drop what was read, so a
//! backup does not push the Redis next to it out of memory, and the pages a
//! read frees are the ones the next reads fill. Advice only: errors are
//! ignored.

use rustix::fs::{fadvise, Advice};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::num::NonZeroU64;

/// Bytes read between two drops of what was read.
const FORGET_EVERY: u64 = 16 << 20;

fn read_sequentially(file: &File) {
    let _ = fadvise(file, 0, None, Advice::Sequential);
}

/// Forget the cached pages of the first `upto` bytes.
pub fn forget(file: &File, upto: u64) {
    if let Some(len) = NonZeroU64::new(upto) {
        let _ = fadvise(file, 0, Some(len), Advice::DontNeed);
    }
}

/// Forget every cached page of `file`.
pub fn forget_all(file: &File) {
    let _ = fadvise(file, 0, None, Advice::DontNeed);
}

/// A file read once, front to back, its pages dropped behind the reader.
pub struct ReadOnce {
    file: File,
    position: u64,
    forgotten: u64,
}

impl ReadOnce {
    /// Read `file` from where it stands.
    pub fn new(mut file: File) -> io::Result<ReadOnce> {
        read_sequentially(&file);
        let position = file.stream_position()?;
        Ok(ReadOnce {
            file,
            position,
            forgotten: position,
        })
    }

    pub fn get_ref(&self) -> &File {
        &self.file
    }

    /// Back to the start of the file (not to where it stood when
    /// wrapped), for another pass.
    pub fn rewind(&mut self) -> io::Result<()> {
        self.position = self.file.seek(SeekFrom::Start(0))?;
        self.forgotten = 0;
        Ok(())
    }
}

impl Read for ReadOnce {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.position += n as u64;
        if self.position - self.forgotten >= FORGET_EVERY || n == 0 {
            forget(&self.file, self.position);
            self.forgotten = self.position;
        }
        Ok(n)
    }
}
