//! Feeding inputs to a node's replica and carrying out what it returns:
//! signing, sending, and what the checkers observe (commits, execution,
//! state roots, supply).

use super::*;

impl Runner {
    /// Run one input through node `i`'s replica and carry out its actions.
    pub(super) fn feed(&mut self, i: usize, input: Input) {
        self.carry_out(i, Vec::new(), VecDeque::from([input]));
    }

    /// Carry out `actions`, then feed `inputs` (and the signatures asked
    /// for) one by one, carrying out what each returns.
    pub(super) fn carry_out(
        &mut self,
        i: usize,
        actions: Vec<Action>,
        mut inputs: VecDeque<Input>,
    ) {
        let mut actions = VecDeque::from(actions);
        loop {
            while let Some(action) = actions.pop_front() {
                if let Some(input) = self.act(i, action) {
                    inputs.push_back(input);
                }
                if self.nodes.get(i).is_none_or(|n| n.replica.is_none()) {
                    // Crashed right after a send: nothing else happens.
                    return;
                }
            }
            let Some(input) = inputs.pop_front() else {
                return;
            };
            let now = Millis(self.now);
            let Some(n) = self.nodes.get_mut(i) else {
                return;
            };
            let Some(replica) = n.replica.as_mut() else {
                return;
            };
            let safety_writes = n.store.durable_writes_touching(Namespace::Safety);
            match replica.handle(now, input) {
                Ok(more) => actions.extend(more),
                Err(_) => {
                    self.replica_failed(i);
                    return;
                }
            }
            // A crash scheduled "after persist" strikes right after the
            // safety state is durable, before anything signed leaves. What
            // the replica reported as durable (commits, executions) stays
            // observed; nothing else of this input happens.
            let n = &self.nodes[i];
            if n.crash_after_persist
                && n.store.durable_writes_touching(Namespace::Safety) > safety_writes
            {
                for action in actions {
                    if let Action::Event(event) = action {
                        self.observe_event(i, event);
                    }
                }
                self.crash(i);
                return;
            }
        }
    }

    /// Carry out one action of node `i`; a signature comes back as input.
    pub(super) fn act(&mut self, i: usize, action: Action) -> Option<Input> {
        match action {
            Action::Sign(job) => {
                // As the engine picks between its signers: the newest key
                // the node's own schedule accepts in the job's epoch, and
                // none while that epoch's keys are not final for it.
                let n = &self.nodes[i];
                let epoch = job.epoch();
                let mut key = &n.key;
                if let Some(m) = n.machine() {
                    for (_, k) in n.rotated_keys.iter().rev() {
                        match m.accepts_own_key(epoch, k.public_key()) {
                            None => return Some(Input::SignFailed { job }),
                            Some(true) => {
                                key = k;
                                break;
                            }
                            Some(false) => {}
                        }
                    }
                }
                let signature = sign_domain(key, self.env, job.request.kind, &job.request.message);
                return Some(Input::Signed { job, signature });
            }
            Action::Send { to, msg } => self.send(i, Some(to), msg),
            Action::Broadcast(msg) => self.send(i, None, msg),
            Action::SetTimer(at) => {
                let coalesce = self.sc.coalesce_timers;
                let n = &mut self.nodes[i];
                if coalesce && !n.timers.insert(at.0.max(self.now)) {
                    return None;
                }
                let incarnation = n.incarnation;
                self.schedule_at(
                    at.0,
                    Event::Tick {
                        node: i,
                        incarnation,
                    },
                );
            }
            Action::Event(event) => self.observe_event(i, event),
        }
        None
    }

    /// What node `i` reports: commits, deliveries, executions, evidence.
    pub(super) fn observe_event(&mut self, i: usize, event: ReplicaEvent) {
        let honest = self.nodes[i].honest;
        match event {
            ReplicaEvent::Committed { block, .. } => self.record_commit(i, block),
            ReplicaEvent::Delivered { height, txs, .. } => {
                let n = &mut self.nodes[i];
                n.executed = height;
                n.executed_txs += txs.len() as u64;
                n.high_fee_executed += txs
                    .iter()
                    .filter(|t| crate::sim::simtx::fee(t) == Some(crate::sim::simtx::HIGH_FEE))
                    .count() as u64;
                if honest {
                    self.checker.execute(i, height, &txs, &self.adv.replayed);
                    self.note_delivered(i, height, &txs);
                }
            }
            ReplicaEvent::Executed {
                height,
                state_root,
                report,
            } => {
                if honest {
                    self.checker.state_root(height, state_root);
                }
                self.nodes[i].executions.push(crate::sim::ExecRecord {
                    height,
                    state_root,
                    succeeded: report.succeeded,
                    failed: report.failed,
                    rejected: report.rejected,
                    fees: report.fees,
                    burned: report.burned,
                });
            }
            ReplicaEvent::EpochClosed { .. } => self.nodes[i].epochs_closed += 1,
            ReplicaEvent::KeyRotation { result, .. } => {
                let counts = &mut self.nodes[i].key_rotations;
                if result.is_ok() {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            }
            ReplicaEvent::Evidence(_) => {
                if honest {
                    self.evidence += 1;
                }
            }
            ReplicaEvent::Rejected { error, .. } => {
                if honest {
                    *self.rejected.entry(error.label()).or_default() += 1;
                }
            }
        }
    }

    pub(super) fn record_commit(&mut self, i: usize, block: Block) {
        let proposed = self
            .proposed_at
            .get(&block.id())
            .copied()
            .unwrap_or(self.now);
        let record = CommitRecord {
            at: self.now,
            height: block.height(),
            view: block.view(),
            epoch: block.epoch(),
            proposer: block.header().proposer,
            id: block.id(),
            txs: block.payload().tx_count(),
            latency: self.now.saturating_sub(proposed),
        };
        if self.nodes[i].honest {
            self.checker
                .commit(i, block.height(), block.id(), block.parent_id());
            self.check_certified(&block);
        }
        self.nodes[i].commits.push(record);
    }

    /// Every batch a committed block orders must carry acks of a quorum of
    /// its epoch's stake — checked here with the raw crypto, not the core's
    /// verifier.
    pub(super) fn check_certified(&mut self, block: &Block) {
        let crate::consensus::Payload::Batches(certs) = block.payload() else {
            return;
        };
        if !self.checked_blocks.insert(block.id()) {
            return;
        }
        for cert in certs {
            let set = self.schedule.set(cert.batch.epoch);
            let message = cert.batch.to_bytes();
            let signers: Vec<ValidatorId> = cert.signers.iter().collect();
            let signed = signers.len() == cert.signatures.len()
                && signers.iter().zip(&cert.signatures).all(|(v, sig)| {
                    set.verify_in_epoch(
                        *v,
                        cert.batch.epoch,
                        self.env,
                        crate::signing::SignKind::BatchAck,
                        &message,
                        sig,
                    )
                    .is_ok()
                });
            if !signed || !set.is_quorum(set.stake_of(&signers)) {
                self.checker.report(Violation::UncertifiedBatch {
                    height: block.height(),
                });
            }
        }
    }
}

/// Total balance plus burned, and minted, over the accounts in `store`.
pub(super) fn supply(store: &MemoryBackend) -> Option<(u128, u128)> {
    let summary = BackendAccounts::new(store).summary().ok()?;
    let mut held = summary.burned;
    for (_, bytes) in store
        .scan_prefix(Namespace::Accounts, &[], usize::MAX)
        .ok()?
    {
        held = held.checked_add(Account::from_bytes(&bytes).ok()?.balance)?;
    }
    Some((held, summary.minted))
}

/// A node whose state diverged: it reports (and proposes) a wrong root.
pub(super) struct Divergent(pub(super) TransferApplication);

impl Application<MemoryBackend> for Divergent {
    fn execute(
        &mut self,
        store: &MemoryBackend,
        block: &crate::application::CommittedBlock<'_>,
    ) -> Result<crate::application::Applied, crate::application::ApplicationError> {
        let mut applied = self.0.execute(store, block)?;
        applied.state_root.0[0] ^= 1;
        Ok(applied)
    }

    fn state_root(
        &self,
        store: &MemoryBackend,
    ) -> Result<Hash32, crate::application::ApplicationError> {
        let mut root = Application::<MemoryBackend>::state_root(&self.0, store)?;
        root.0[0] ^= 1;
        Ok(root)
    }
}
