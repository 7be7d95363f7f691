//! Reading a child's output pipe line by line, and keeping its last lines.

use std::collections::VecDeque;

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::io::AsyncRead;

/// Longest line kept; longer lines are split at this length.
pub(crate) const MAX_LINE: usize = 4096;

/// Splits an async byte stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    reader: Option<R>,
    buf: Vec<u8>,
    /// Bytes of `buf` already scanned for a newline.
    scanned: usize,
    /// Start of the next line in `buf`.
    start: usize,
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    pub(crate) fn new(reader: R) -> Self {
        LineReader {
            reader: Some(reader),
            buf: Vec::with_capacity(MAX_LINE),
            scanned: 0,
            start: 0,
            line: Vec::new(),
        }
    }

    /// True once the stream ended and every line was returned.
    #[cfg(test)]
    pub(crate) fn is_done(&self) -> bool {
        self.reader.is_none() && self.start >= self.buf.len()
    }

    /// The next line without its terminator (`\n` or `\r\n`); `Ready(None)` at the end.
    pub(crate) fn poll_line(&mut self, cx: &mut Context<'_>) -> Poll<Option<&[u8]>> {
        loop {
            if let Some(pos) = self.buf[self.scanned..].iter().position(|&b| b == b'\n') {
                let end = self.scanned + pos;
                let mut line_end = end;
                if line_end > self.start && self.buf[line_end - 1] == b'\r' {
                    line_end -= 1;
                }
                self.line.clear();
                self.line.extend_from_slice(&self.buf[self.start..line_end]);
                self.start = end + 1;
                self.scanned = self.start;
                return Poll::Ready(Some(&self.line));
            }
            self.scanned = self.buf.len();
            if self.scanned - self.start >= MAX_LINE
                || (self.reader.is_none() && self.start < self.buf.len())
            {
                let end = (self.start + MAX_LINE).min(self.buf.len());
                self.line.clear();
                self.line.extend_from_slice(&self.buf[self.start..end]);
                self.start = end;
                self.scanned = end;
                return Poll::Ready(Some(&self.line));
            }
            let Some(reader) = self.reader.as_mut() else {
                return Poll::Ready(None);
            };
            // Compact, then read more.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.scanned -= self.start;
                self.start = 0;
            }
            let len = self.buf.len();
            self.buf.resize(len + MAX_LINE, 0);
            let read = Pin::new(reader).poll_read(cx, &mut self.buf[len..]);
            match read {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    self.buf.truncate(len);
                    self.reader = None;
                }
                Poll::Ready(Ok(n)) => self.buf.truncate(len + n),
                Poll::Pending => {
                    self.buf.truncate(len);
                    return Poll::Pending;
                }
            }
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

    fn lines(input: &[u8]) -> Vec<Vec<u8>> {
        let mut reader = LineReader::new(input);
        let mut out = Vec::new();
        block_on(std::future::poll_fn(|cx| loop {
            match reader.poll_line(cx) {
                Poll::Ready(Some(line)) => out.push(line.to_vec()),
                Poll::Ready(None) => return Poll::Ready(()),
                Poll::Pending => return Poll::Pending,
            }
        }));
        assert!(reader.is_done());
        out
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
    }

    #[test]
    fn long_lines_are_cut() {
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let got = lines(&long);
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
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
