//! Reading a child's output pipe: raw chunks (forwarded byte for byte), split into bounded
//! lines for the consumers that need lines (readiness matching, the last lines, prefixed
//! forwarding), and the last lines kept for error reports.

use std::collections::VecDeque;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

/// Longest line kept; longer lines are split at this length.
pub(crate) const MAX_LINE: usize = 4096;

/// Largest chunk read from a pipe at once.
pub(crate) const CHUNK: usize = 16 * 1024;

/// Reads an async byte stream in chunks of at most [`CHUNK`] bytes, into one buffer per
/// thread (all pods are read on the driver thread: a buffer per pod would cost each pod
/// its size in memory).
#[derive(Debug)]
pub(crate) struct ChunkReader<R> {
    reader: Option<R>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; CHUNK]);
}

impl<R: AsyncRead + Unpin> ChunkReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        ChunkReader {
            reader: Some(reader),
        }
    }

    /// Reads the next chunk and hands it to `take` as it came; `Ready(None)` at the end of
    /// the stream (or on a read error, after which nothing more can be read).
    pub(crate) fn poll_chunk<T>(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&[u8]) -> T,
    ) -> Poll<Option<T>> {
        let Some(reader) = self.reader.as_mut() else {
            return Poll::Ready(None);
        };
        let read = SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            match Pin::new(reader).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Poll::Ready(None),
                Poll::Ready(Ok(n)) => Poll::Ready(Some(take(&buf[..n]))),
                Poll::Pending => Poll::Pending,
            }
        });
        if let Poll::Ready(None) = read {
            self.reader = None;
        }
        read
    }
}

/// Splits a byte stream, given in chunks, into lines of at most [`MAX_LINE`] bytes without
/// their terminator (`\n` or `\r\n`).
#[derive(Debug, Default)]
pub(crate) struct LineSplitter {
    partial: Vec<u8>,
}

impl LineSplitter {
    /// Calls `line` for every line `chunk` completes.
    pub(crate) fn push(&mut self, mut chunk: &[u8], line: &mut dyn FnMut(&[u8])) {
        while !chunk.is_empty() {
            let room = MAX_LINE - self.partial.len();
            let window = &chunk[..chunk.len().min(room + 1)];
            match window.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    self.partial.extend_from_slice(&chunk[..pos]);
                    chunk = &chunk[pos + 1..];
                    if self.partial.last() == Some(&b'\r') {
                        self.partial.pop();
                    }
                    line(&self.partial);
                    self.partial.clear();
                }
                None if chunk.len() > room => {
                    // A full line without a newline: cut it here.
                    self.partial.extend_from_slice(&chunk[..room]);
                    chunk = &chunk[room..];
                    line(&self.partial);
                    self.partial.clear();
                }
                None => {
                    self.partial.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
    }

    /// Calls `line` for the unterminated rest, if any (at the end of the stream).
    pub(crate) fn finish(&mut self, line: &mut dyn FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }
}

/// The last lines of a pod's output, bounded in count.
#[derive(Clone, Debug, Default)]
pub(crate) struct LastLines {
    lines: VecDeque<String>,
    capacity: usize,
}

impl LastLines {
    pub(crate) fn new(capacity: usize) -> Self {
        LastLines {
            lines: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    pub(crate) fn push(&mut self, line: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        if self.lines.len() == self.capacity {
            self.lines.pop_front();
        }
        self.lines
            .push_back(String::from_utf8_lossy(line).into_owned());
    }

    pub(crate) fn to_vec(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    /// The chunks of `input` read through a `ChunkReader`, then split into lines in pieces
    /// of `piece` bytes.
    fn lines_in_pieces(input: &[u8], piece: usize) -> Vec<Vec<u8>> {
        let mut reader = ChunkReader::new(input);
        let mut bytes = Vec::new();
        block_on(std::future::poll_fn(|cx| loop {
            match reader.poll_chunk(cx, |chunk| bytes.extend_from_slice(chunk)) {
                Poll::Ready(Some(())) => {}
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }));
        assert_eq!(bytes, input, "chunks pass bytes through unchanged");
        let mut splitter = LineSplitter::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece.max(1)) {
            splitter.push(chunk, &mut |l| out.push(l.to_vec()));
        }
        splitter.finish(&mut |l| out.push(l.to_vec()));
        out
    }

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let whole = lines_in_pieces(input, input.len());
        for piece in [1, 2, 3, 7] {
            assert!(
                lines_in_pieces(input, piece) == whole,
                "differs in pieces of {piece}"
            );
        }
        whole
    }

    #[test]
    fn splits_lines_and_strips_terminators() {
        assert_eq!(
            lines(b"a\nbb\r\n\nlast"),
            vec![
                b"a".to_vec(),
                b"bb".to_vec(),
                b"".to_vec(),
                b"last".to_vec()
            ]
        );
        assert_eq!(lines(b""), Vec::<Vec<u8>>::new());
        assert_eq!(lines(b"\rprogress\r"), vec![b"\rprogress\r".to_vec()]);
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let got = lines(&long);
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
        );
        // A line of exactly MAX_LINE bytes and its newline make one line, not two.
        let mut exact = vec![b'y'; MAX_LINE];
        exact.extend_from_slice(b"\nz\n");
        assert_eq!(
            lines(&exact).iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, 1]
        );
    }

    #[test]
    fn last_lines_keeps_the_newest() {
        let mut last = LastLines::new(2);
        for line in [b"1", b"2", b"3"] {
            last.push(line);
        }
        assert_eq!(last.to_vec(), vec!["2", "3"]);
        let mut none = LastLines::new(0);
        none.push(b"x");
        assert!(none.to_vec().is_empty());
    }
}
