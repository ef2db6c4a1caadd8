//! Stage three of a run: follow the engines' events (progress lines, the
//! state-root agreement check, the store services) until the target is
//! reached or the node is told to stop, then stop everything in order —
//! the generator, the engines (each finishes its block and flushes), the
//! store services.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use qbind_core::application::ExecutionReport;
use qbind_core::replica::Event as EngineEvent;
use qbind_core::types::Hash32;
use tokio::sync::watch;

use super::RunSummary;
use super::render::Shared;
use super::services::{EngineHandle, Engines};
use crate::node::{NodeError, Services};

/// The public API of a running node.
pub(super) struct RunningApi {
    /// The local slot it serves.
    pub(super) slot: usize,
    /// Its receipt index, fed from that slot's events.
    pub(super) index: Arc<super::ReceiptIndex>,
    /// The server task (ends once `stop` is sent and requests finished).
    pub(super) task: tokio::task::JoinHandle<()>,
    /// Stops the server.
    pub(super) stop: watch::Sender<bool>,
}

/// The admin endpoint of a running node.
pub(super) struct RunningAdmin {
    /// Stops the server.
    pub(super) stop: watch::Sender<bool>,
    /// The server task.
    pub(super) task: tokio::task::JoinHandle<()>,
}

impl RunningAdmin {
    /// Stop the server: requests in flight get two seconds, then every
    /// connection is dropped (a client holding one open must not delay
    /// the node's stop).
    pub(super) async fn stop(self) {
        let _ = self.stop.send(true);
        let abort = self.task.abort_handle();
        if tokio::time::timeout(std::time::Duration::from_secs(2), self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// A started node: what [`Running::run`] follows and stops.
pub(super) struct Running {
    /// The public API, if served.
    pub(super) api: Option<RunningApi>,
    /// The admin endpoint, if served.
    pub(super) admin: Option<RunningAdmin>,
    /// The `/metrics` endpoint (stops when this is dropped).
    pub(super) metrics: Option<super::services::MetricsEndpoint>,
    /// Validators of this process (local slot → index).
    pub(super) local: Vec<usize>,
    /// Stop after every local validator executed this many more blocks (0:
    /// never).
    pub(super) blocks: u64,
    /// The engines.
    pub(super) engines: Engines,
    /// The store services.
    pub(super) services: Vec<Services>,
    /// Shared with the metrics endpoint.
    pub(super) shared: Arc<Shared>,
    /// The load generator, if one runs.
    pub(super) generator: Option<tokio::task::JoinHandle<()>>,
    /// Transfers the generator submitted.
    pub(super) submitted: Arc<AtomicU64>,
    /// Fire with an exit code when an ExitOnFailure signer fails (the
    /// current signer's, the next key's).
    pub(super) signer_exit: Vec<watch::Receiver<Option<i32>>>,
    /// The summary so far (`resumed_from` filled in).
    pub(super) summary: RunSummary,
}

/// Resolves with the exit code once one of the signers reports a fatal
/// failure; never without a signer.
fn wait_exit(
    rxs: &mut [watch::Receiver<Option<i32>>],
) -> std::pin::Pin<Box<dyn std::future::Future<Output = i32> + Send + '_>> {
    Box::pin(async move {
        let Some((first, rest)) = rxs.split_first_mut() else {
            return std::future::pending().await;
        };
        let one = async {
            let code = first
                .wait_for(Option::is_some)
                .await
                .map(|code| code.unwrap_or(1));
            match code {
                Ok(code) => code,
                // The signer is gone: nothing will report again.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            code = one => code,
            code = wait_exit(rest) => code,
        }
    })
}

/// Print an epoch's monetary state (validator 0 of this process only).
fn print_epoch(ev: &EngineEvent, out: &impl Fn(&str)) {
    if let EngineEvent::EpochClosed {
        height,
        state,
        credited,
    } = ev
    {
        out(&format!(
            "epoch {} closed at height {}: phase {:?}, annual rate {} bps, issued {} \
             (validators {}, treasury {}, insurance {}, community {}), credited {credited}",
            state.epoch,
            height.0,
            state.phase,
            state.r_inf_annual_bps,
            state.issuance,
            state.to_validators,
            state.to_treasury,
            state.to_insurance,
            state.to_community
        ));
    }
}

/// Why the event loop ended.
enum Ended {
    /// Target reached, shutdown requested, or the events ended.
    Normally,
    /// An engine task finished on its own.
    EngineFailed,
    /// The signer failed under ExitOnFailure with this code.
    SignerExit(i32),
}

impl Running {
    /// Every local validator executed `blocks` more blocks.
    fn done(&self) -> bool {
        self.blocks > 0
            && self
                .summary
                .executed_height
                .iter()
                .zip(&self.summary.resumed_from)
                .all(|(h, from)| *h >= from + self.blocks)
    }

    /// Record one executed block of local slot `slot`.
    fn on_executed(
        &mut self,
        slot: usize,
        height: u64,
        state_root: Hash32,
        report: &ExecutionReport,
        roots: &mut BTreeMap<u64, Hash32>,
        out: &impl Fn(&str),
    ) {
        let i = self.local[slot];
        self.summary.executed_height[slot] = height;
        self.summary.state_root[slot] = state_root;
        self.shared.executed[slot].store(height, Ordering::Relaxed);
        self.shared.transfers[slot].fetch_add(report.succeeded, Ordering::Relaxed);
        self.services[slot].on_executed(height);
        match roots.get(&height) {
            Some(r) if *r != state_root => {
                self.shared.root_mismatches.fetch_add(1, Ordering::Relaxed);
                self.summary.root_mismatches.push(height);
                out(&format!(
                    "STATE ROOT MISMATCH at height {height}: validator {i} has {state_root:?}, another {r:?}"
                ));
            }
            Some(_) => {}
            None => {
                roots.insert(height, state_root);
            }
        }
        if slot == 0 {
            self.summary.transfers += report.succeeded;
            let hex: String = state_root.as_bytes()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            out(&format!(
                "height {height:>6}  transfers ok {:>3} failed {:>2} rejected {:>2}  fees {:>8}  state root {hex}",
                report.succeeded, report.failed, report.rejected, report.fees
            ));
        }
        // Keep the agreement map small.
        let floor = self
            .summary
            .executed_height
            .iter()
            .min()
            .copied()
            .unwrap_or(0);
        while roots.first_key_value().is_some_and(|(h, _)| *h + 1 < floor) {
            roots.pop_first();
        }
    }

    /// Follow the engines until done, shut down, or a failure.
    async fn follow(&mut self, shutdown: &mut watch::Receiver<bool>, out: &impl Fn(&str)) -> Ended {
        let mut roots: BTreeMap<u64, Hash32> = BTreeMap::new();
        let mut signer_exit = std::mem::take(&mut self.signer_exit);
        while !self.done() {
            let (slot, ev) = tokio::select! {
                _ = shutdown.changed() => return Ended::Normally,
                code = wait_exit(&mut signer_exit) => {
                    out(&format!("signer failure (ExitOnFailure): stopping, exit code {code}"));
                    return Ended::SignerExit(code);
                }
                ev = self.engines.events.recv() => match ev {
                    Some(ev) => ev,
                    None => return Ended::Normally,
                },
            };
            if slot == 0 {
                print_epoch(&ev, out);
            }
            if let EngineEvent::EpochClosed { state, .. } = &ev {
                self.shared.epoch_closed(slot, state);
            }
            if let Some(api) = self.api.as_ref().filter(|a| a.slot == slot)
                && let EngineEvent::Executed {
                    height, state_root, ..
                } = &ev
            {
                api.index.executed(*height, *state_root);
            }
            if let EngineEvent::Executed {
                height,
                state_root,
                report,
            } = ev
            {
                self.on_executed(slot, height.0, state_root, &report, &mut roots, out);
            }
            if self.engines.handles.iter().any(|h| h.is_finished()) {
                return Ended::EngineFailed;
            }
        }
        Ended::Normally
    }

    /// Run until `blocks` more blocks are executed by every local validator
    /// or `shutdown` becomes true, then stop cleanly.
    pub(super) async fn run(
        mut self,
        mut shutdown: watch::Receiver<bool>,
        out: &impl Fn(&str),
    ) -> Result<RunSummary, NodeError> {
        self.summary.executed_height = self.summary.resumed_from.clone();
        self.summary.state_root = vec![Hash32::ZERO; self.local.len()];
        let ended = self.follow(&mut shutdown, out).await;
        let _ = self.engines.stop.send(true);
        if let Some(admin) = self.admin.take() {
            admin.stop().await;
        }
        if let Some(api) = self.api.take() {
            // No more submissions; requests in flight finish.
            let _ = api.stop.send(true);
            let _ = api.task.await;
        }
        if let Some(generator) = self.generator.take() {
            let _ = generator.await;
        }
        let first_error = join_engines(std::mem::take(&mut self.engines.handles)).await;
        for s in self.services.drain(..) {
            s.stop();
        }
        // Scrapes are answered until everything else has stopped.
        drop(self.metrics.take());
        if let Ended::SignerExit(code) = ended {
            return Err(NodeError::SignerExit(code));
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        if matches!(ended, Ended::EngineFailed) {
            return Err(NodeError::Config("an engine stopped unexpectedly".into()));
        }
        self.summary.submitted = self.submitted.load(Ordering::Relaxed);
        Ok(self.summary)
    }
}

/// Wait for every engine; the first error.
async fn join_engines(handles: Vec<EngineHandle>) -> Option<NodeError> {
    let mut first_error = None;
    for h in handles {
        match h.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                first_error.get_or_insert(NodeError::Engine(e));
            }
            Err(e) => {
                first_error.get_or_insert(NodeError::Config(format!("engine task failed: {e}")));
            }
        }
    }
    first_error
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Either signer's fatal failure ends the wait with its code: the
    /// current signer's (first) and the next key's (second); a gone sender
    /// never does.
    #[tokio::test]
    async fn either_signer_stops_the_node() {
        let (current, current_rx) = watch::channel(None);
        let (next, next_rx) = watch::channel(None);
        let mut rxs = vec![current_rx, next_rx];
        let short = Duration::from_millis(50);
        assert!(
            tokio::time::timeout(short, wait_exit(&mut rxs))
                .await
                .is_err()
        );
        next.send_replace(Some(7));
        assert_eq!(
            tokio::time::timeout(short, wait_exit(&mut rxs)).await,
            Ok(7)
        );

        let mut rxs = vec![current.subscribe(), watch::channel(None).1];
        current.send_replace(Some(1));
        assert_eq!(
            tokio::time::timeout(short, wait_exit(&mut rxs)).await,
            Ok(1)
        );

        // No signer, or one whose sender is gone: never.
        assert!(
            tokio::time::timeout(short, wait_exit(&mut []))
                .await
                .is_err()
        );
        let mut gone = vec![watch::channel::<Option<i32>>(None).1];
        assert!(
            tokio::time::timeout(short, wait_exit(&mut gone))
                .await
                .is_err()
        );
    }
}
