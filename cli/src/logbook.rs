//! The output of `podvisor up`'s members, kept for `podvisor logs`: the last [`KEPT`]
//! lines of each member (across its restarts), numbered in one sequence so that lines of
//! several members merge in the order they were read, and followers wait for new ones.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use podvisor::core::Stream;

/// Lines kept per member.
pub const KEPT: usize = 5000;

/// One line a member wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub seq: u64,
    pub member: String,
    pub stream: Stream,
    pub text: String,
}

#[derive(Debug, Default)]
struct Book {
    next: u64,
    members: BTreeMap<String, VecDeque<Line>>,
    closed: bool,
}

/// The members' lines; see the module's text.
#[derive(Debug, Default)]
pub struct LogBook {
    book: Mutex<Book>,
    changed: Condvar,
}

impl LogBook {
    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a line `member` wrote, the last [`KEPT`] per member.
    #[cfg(test)]
    pub fn push(&self, member: &str, stream: Stream, text: &[u8]) {
        self.push_kept(member, stream, text, KEPT);
    }

    /// Keeps a line `member` wrote, the last `kept` per member (the pod's `log_lines`);
    /// called on the pods' driver thread, so it only queues.
    pub fn push_kept(&self, member: &str, stream: Stream, text: &[u8], kept: usize) {
        let mut book = self.lock();
        let seq = book.next;
        book.next += 1;
        let lines = book.members.entry(member.to_string()).or_default();
        if kept == 0 {
            return;
        }
        while lines.len() >= kept {
            lines.pop_front();
        }
        lines.push_back(Line {
            seq,
            member: member.to_string(),
            stream,
            text: String::from_utf8_lossy(text).into_owned(),
        });
        drop(book);
        self.changed.notify_all();
    }

    /// No more lines will come (the deployment ended): followers stop.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The last `tail` lines of each member `wanted` accepts (all kept if `None`), as
    /// `docker compose logs --tail`, merged in the order they were read; and the sequence
    /// number to follow from.
    pub fn tail(&self, wanted: &dyn Fn(&str) -> bool, tail: Option<usize>) -> (Vec<Line>, u64) {
        let book = self.lock();
        let mut lines: Vec<Line> = book
            .members
            .iter()
            .filter(|(member, _)| wanted(member))
            .flat_map(|(_, lines)| {
                let skip = tail.map_or(0, |tail| lines.len().saturating_sub(tail));
                lines.iter().skip(skip).cloned()
            })
            .collect();
        lines.sort_by_key(|l| l.seq);
        (lines, book.next)
    }

    /// The lines numbered `from` or later of the members `wanted` accepts, waiting up to
    /// `wait` for one; the next number to ask for; and whether the book is closed.
    pub fn since(
        &self,
        wanted: &dyn Fn(&str) -> bool,
        from: u64,
        wait: Duration,
    ) -> (Vec<Line>, u64, bool) {
        let mut book = self.lock();
        if book.next <= from && !book.closed {
            book = self
                .changed
                .wait_timeout_while(book, wait, |b| b.next <= from && !b.closed)
                .map_or_else(|e| e.into_inner().0, |(b, _)| b);
        }
        let mut lines: Vec<Line> = book
            .members
            .iter()
            .filter(|(member, _)| wanted(member))
            .flat_map(|(_, lines)| lines.iter().filter(|l| l.seq >= from).cloned())
            .collect();
        lines.sort_by_key(|l| l.seq);
        (lines, book.next, book.closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_merge_members_in_order_and_rings_are_bounded() {
        let book = LogBook::default();
        book.push("a/0", Stream::Stdout, b"a1");
        book.push("b/0", Stream::Stderr, b"b1");
        book.push("a/0", Stream::Stdout, b"a2");
        let all = |_: &str| true;
        // Per member: a's last two and b's one.
        let (lines, next) = book.tail(&all, Some(2));
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!((texts, next), (vec!["a1", "b1", "a2"], 3));
        let (lines, _) = book.tail(&all, Some(1));
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["b1", "a2"]);
        let only_a = |m: &str| m == "a/0";
        let (lines, _, closed) = book.since(&only_a, 1, Duration::ZERO);
        assert_eq!(lines.len(), 1);
        assert!(!closed);
        for i in 0..KEPT + 10 {
            book.push("c/0", Stream::Stdout, i.to_string().as_bytes());
        }
        let only_c = |m: &str| m == "c/0";
        let (lines, _) = book.tail(&only_c, None);
        assert_eq!(lines.len(), KEPT);
        assert_eq!(lines[0].text, "10");
        // A pod's own `log_lines`, 0 keeping nothing.
        for i in 0..5 {
            book.push_kept("d/0", Stream::Stdout, i.to_string().as_bytes(), 2);
            book.push_kept("e/0", Stream::Stdout, b"x", 0);
        }
        let (lines, _) = book.tail(&|m: &str| m == "d/0", None);
        let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(texts, ["3", "4"]);
        assert!(book.tail(&|m: &str| m == "e/0", None).0.is_empty());
        book.close();
        let (lines, _, closed) = book.since(&all, u64::MAX, Duration::from_secs(60));
        assert!(lines.is_empty() && closed);
    }
}
