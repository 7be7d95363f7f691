//! Thread pods: a runtime hosted on a thread of its own, which cannot be signalled: the
//! stop signal becomes its `cancel`, and its notify messages and exit come back through
//! the shared mailbox.

use std::io;
use std::sync::Arc;

use crate::core::{Action, Event, ExitStatus, Generation, GroupSignal};
use crate::runtime::CancelSlot;

use super::shared::ThreadMessage;
use super::Driver;

impl Driver {
    /// A thread cannot be signalled: the stop signal becomes `cancel` (called on a thread
    /// of its own, as it may block), and SIGKILL abandons the thread: it is left running,
    /// detached, and its end is [`ExitStatus::Abandoned`] (the core decides it was killed).
    pub(super) fn signal_thread(
        &mut self,
        signal: GroupSignal,
        generation: Generation,
    ) -> Vec<Action> {
        match signal {
            GroupSignal::Stop | GroupSignal::Watchdog => {
                if let Some(slot) = self.thread.clone() {
                    let shared = self.shared.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("podvisor-cancel-{}", self.config.name))
                        .spawn(move || {
                            slot.cancel(&|m| {
                                shared.push_thread_message(ThreadMessage::Notify(m.to_string()))
                            })
                        });
                }
                Vec::new()
            }
            GroupSignal::Continue => Vec::new(),
            GroupSignal::Kill => {
                let now = self.now();
                self.shared.handle(
                    Event::Exited {
                        generation,
                        status: ExitStatus::Abandoned,
                    },
                    now,
                )
            }
        }
    }

    pub(super) fn poll_thread(&mut self) -> bool {
        let messages = self.shared.take_thread_messages();
        let generation = self.shared.generation();
        for message in &messages {
            match message {
                ThreadMessage::Notify(text) => self.feed(Event::Notify {
                    generation,
                    datagram: text.as_bytes(),
                }),
                ThreadMessage::Exited(code) => self.feed(Event::Exited {
                    generation,
                    status: ExitStatus::Code(*code),
                }),
            }
        }
        !messages.is_empty()
    }

    pub(super) fn spawn_thread(
        &mut self,
        factory: crate::runtime::RuntimeFactory,
    ) -> io::Result<()> {
        let slot = Arc::new(CancelSlot::default());
        self.thread = Some(slot.clone());
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name(format!("podvisor-runtime-{}", self.config.name))
            .spawn(move || {
                let for_report = shared.clone();
                let report: Arc<dyn Fn(&str) + Send + Sync> = Arc::new(move |m: &str| {
                    for_report.push_thread_message(ThreadMessage::Notify(m.to_string()))
                });
                let code = crate::runtime::host(&factory, &slot, report);
                shared.push_thread_message(ThreadMessage::Exited(code));
            })?;
        Ok(())
    }
}
