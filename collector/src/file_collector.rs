//! [`FileCollector`]: the loop from one tailed file to the bus, with end-to-end
//! acknowledgement.
//!
//! ```text
//! FileTailer ─▶ LineProcessor ─▶ Transport::publish ─▶ DeliveryReceipt ─▶ Checkpoint::commit
//!                    │                                         └─ refused records ─┐
//!                    └─ rejected / oversize / envelope too big ─▶ QuarantineSink ◀──┘
//!                                                          (synced before the commit)
//! ```
//!
//! No single line can stop the collector: a line the processor refuses, one longer than the
//! tailer's maximum, and one whose sealed envelope is over
//! [`CollectorConfig::max_envelope_bytes`] (the bus would refuse it and the collector would
//! re-read it forever) are each quarantined with a reason and counted, and the checkpoint
//! moves past them with their batch-mates. So is a record the bus refuses for good after it
//! was published (its receipt names it in [`Delivered::refused`]: a topic limit smaller than
//! ours, a record the broker calls invalid): retrying it would be refused again, so the
//! collector quarantines its payload (reason `refused by the bus: …`), counts it in
//! [`CollectorStats::envelopes_refused`], and moves on with the rest of its batch.
//!
//! Lines are read in batches. Each batch is published as one call and remembered, with the
//! file offset just past its last line, in an in-flight queue (several batches may be in
//! flight: pipelining). Receipts are settled strictly in queue order, and the checkpoint is
//! moved to the end of a batch only once that batch and all before it were acknowledged, so
//! it never passes a line that is not durable downstream or in quarantine. After a crash, at
//! worst the batches that were in flight are read and delivered again.
//!
//! Shutdown is signalled with a [`CancellationToken`]: the collector stops reading, waits up to
//! [`CollectorConfig::drain_timeout`] for the receipts in flight, commits what they cover and
//! returns.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vigil_bus::{BusError, Delivered, DeliveryReceipt, Record, Refusal, Transport};

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::identity::FileIdentity;
use crate::processor::{LineOrigin, LineOutcome, LineProcessor};
use crate::quarantine::{QuarantineError, QuarantineItem, QuarantineKind, QuarantineSink};
use crate::stats::CollectorStats;
use crate::tailer::{FileTailer, Line, TailError, TailItem, TailerConfig};

/// How a [`FileCollector`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorConfig {
    /// Source name handed to the processor (node and audit device); the bus key of records.
    pub source: String,
    /// The file and how to tail it.
    pub tailer: TailerConfig,
    /// Most lines per published batch.
    pub max_batch_lines: usize,
    /// Most batches published and not yet acknowledged; reading pauses at this number.
    pub max_in_flight: usize,
    /// How long shutdown waits for batches in flight before giving up on them (they are read
    /// again after a restart).
    pub drain_timeout: Duration,
    /// Largest envelope (record payload) published; a line whose envelope is larger is
    /// quarantined (reason `envelope over N bytes`) instead. Set it under what the bus accepts
    /// — for Kafka the producer's `message.max.bytes`, less the record key and about 1 KiB of
    /// record overhead — so that the bus never refuses a record for its size.
    pub max_envelope_bytes: usize,
}

/// [`CollectorConfig::max_envelope_bytes`] by default: 960 KiB, under the 1 000 000 bytes
/// librdkafka's producer accepts by default with room for the key and the record overhead.
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 960 * 1024;

impl CollectorConfig {
    /// The defaults: batches of up to 1000 lines, 4 batches in flight, 10 s to drain,
    /// envelopes up to [`DEFAULT_MAX_ENVELOPE_BYTES`].
    pub fn new(source: impl Into<String>, tailer: TailerConfig) -> Self {
        Self {
            source: source.into(),
            tailer,
            max_batch_lines: 1000,
            max_in_flight: 4,
            drain_timeout: Duration::from_secs(10),
            max_envelope_bytes: DEFAULT_MAX_ENVELOPE_BYTES,
        }
    }
}

/// Why a [`FileCollector`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectorError {
    /// Reading the file failed.
    #[error(transparent)]
    Tail(#[from] TailError),
    /// The checkpoint store failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Writing to quarantine failed; the lines are not acknowledged.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// The bus refused a batch or reported it not delivered; the checkpoint stays before it.
    /// (A record refused on its own is quarantined instead, see the module documentation.)
    #[error("delivery failed: {0}")]
    Delivery(#[from] BusError),
    /// A blocking task (reading the file, committing the checkpoint) panicked or was
    /// cancelled.
    #[error("collector task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

/// Tails one file and publishes its lines; see the module documentation.
pub struct FileCollector {
    config: CollectorConfig,
    checkpoint: Arc<Checkpoint>,
    transport: Arc<dyn Transport>,
    processor: Arc<dyn LineProcessor>,
    quarantine: Arc<dyn QuarantineSink>,
    stats: Arc<CollectorStats>,
}

/// A published batch waiting for its receipt.
struct InFlight {
    identity: FileIdentity,
    /// Offset just past the batch's last line: the checkpoint once it is acknowledged.
    end: u64,
    file_len: u64,
    /// The published records, in batch order: a [`Refusal`]'s index points in here.
    sent: Vec<SentRecord>,
    receipt: DeliveryReceipt,
}

/// What the collector keeps of one published record until its receipt resolves, so that a
/// record the bus refuses can still be quarantined: the payload is gone into the bus.
struct SentRecord {
    /// Offset of the line's first byte.
    offset: u64,
    /// Length of the line, newline excluded.
    length: u64,
    /// The record's payload as published.
    payload: Vec<u8>,
}

/// What one look at the file found.
struct ReadStep {
    /// Set when this look chose where the file starts.
    started_at: Option<u64>,
    identity: FileIdentity,
    items: Vec<TailItem>,
    /// Offset just past the last line of `items`, if the items cover any line.
    end: Option<u64>,
    file_len: u64,
}

/// What the loop waits for when it cannot read.
enum Wake {
    Shutdown,
    Receipt(Result<Delivered, BusError>),
    Poll,
}

impl FileCollector {
    /// Assembles a collector. Nothing happens until [`FileCollector::run`].
    pub fn new(
        config: CollectorConfig,
        checkpoint: Arc<Checkpoint>,
        transport: Arc<dyn Transport>,
        processor: Arc<dyn LineProcessor>,
        quarantine: Arc<dyn QuarantineSink>,
    ) -> Self {
        Self {
            config,
            checkpoint,
            transport,
            processor,
            quarantine,
            stats: Arc::new(CollectorStats::default()),
        }
    }

    /// The collector's counters; they stay readable while it runs.
    pub fn stats(&self) -> Arc<CollectorStats> {
        Arc::clone(&self.stats)
    }

    /// Runs until `shutdown` is cancelled (then drains, see the module documentation) or an
    /// error stops it. After an error the checkpoint is where the last acknowledged batch
    /// ended, so running a new collector re-reads from there.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), CollectorError> {
        let mut tailer = FileTailer::new(self.config.tailer.clone());
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        let max_in_flight = self.config.max_in_flight.max(1);
        let result = loop {
            if let Err(error) = self.settle_ready(&mut in_flight, None, false).await {
                break Err(error);
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if in_flight.len() >= max_in_flight {
                match self.wait(&shutdown, &mut in_flight, None).await {
                    Wake::Shutdown => break Ok(()),
                    Wake::Receipt(outcome) => {
                        if let Err(error) = self.head_resolved(outcome, &mut in_flight).await {
                            break Err(error);
                        }
                    }
                    Wake::Poll => {}
                }
                continue;
            }
            let step;
            (tailer, step) = self.read_step(tailer).await?;
            let step = match step {
                Ok(step) => step,
                Err(error) => break Err(error),
            };
            let batch = match step.map(|step| self.build_batch(step)) {
                None => None,
                Some(Err(error)) => Some(Err(error)),
                Some(Ok((batch, quarantined))) => {
                    if quarantined {
                        // Quarantined lines count as handled once the checkpoint passes them,
                        // so they must be durable first. Synced off the runtime: it waits
                        // for the quarantine's writer and the disk.
                        if let Err(error) = self.sync_quarantine().await {
                            break Err(error);
                        }
                    }
                    batch.map(Ok)
                }
            };
            match batch {
                Some(Ok((pending, records))) => {
                    match self.publish(&shutdown, pending, records).await {
                        Ok(Some(batch)) => in_flight.push_back(batch),
                        Ok(None) => break Ok(()),
                        Err(error) => break Err(error),
                    }
                }
                Some(Err(error)) => break Err(error),
                None => {
                    let poll = self.config.tailer.poll_interval;
                    match self.wait(&shutdown, &mut in_flight, Some(poll)).await {
                        Wake::Shutdown => break Ok(()),
                        Wake::Receipt(outcome) => {
                            if let Err(error) = self.head_resolved(outcome, &mut in_flight).await {
                                break Err(error);
                            }
                        }
                        Wake::Poll => {}
                    }
                }
            }
        };
        match result {
            Ok(()) => self.drain(in_flight).await,
            Err(error) => Err(error),
        }
    }

    /// Looks at the file on a blocking thread: identifies and starts it if needed, then reads
    /// up to one batch of items. The tailer is moved in and handed back.
    async fn read_step(
        &self,
        mut tailer: FileTailer,
    ) -> Result<(FileTailer, Result<Option<ReadStep>, CollectorError>), CollectorError> {
        let checkpoint = Arc::clone(&self.checkpoint);
        let max_items = self.config.max_batch_lines.max(1);
        tokio::task::spawn_blocking(move || {
            let step = read_step(&mut tailer, &checkpoint, max_items);
            (tailer, step)
        })
        .await
        .map_err(CollectorError::Task)
    }

    /// Makes the quarantine durable, on a blocking thread.
    /// Quarantines `line` as rejected, with `reason`.
    fn reject_line(&self, line: &Line, reason: &str) -> Result<(), CollectorError> {
        self.quarantine.quarantine(&QuarantineItem {
            kind: QuarantineKind::Rejected,
            reason,
            source: self.config.source.as_str(),
            path: self.config.tailer.path.as_path(),
            offset: line.offset,
            length: line.bytes.len() as u64,
            bytes: &line.bytes,
        })?;
        Ok(())
    }

    async fn sync_quarantine(&self) -> Result<(), CollectorError> {
        let quarantine = Arc::clone(&self.quarantine);
        tokio::task::spawn_blocking(move || quarantine.sync())
            .await
            .map_err(CollectorError::Task)??;
        Ok(())
    }

    /// Runs the processor over one read, hands what will not be published to quarantine, and
    /// returns the batch to publish (`None` when the read covers no line) and whether anything
    /// was quarantined (the caller syncs the quarantine before the batch can be committed).
    #[allow(clippy::type_complexity)]
    fn build_batch(
        &self,
        step: ReadStep,
    ) -> Result<(Option<(InFlight, Vec<Record>)>, bool), CollectorError> {
        if let Some(start) = step.started_at {
            CollectorStats::set(&self.stats.checkpoint_offset, start);
        }
        CollectorStats::set(
            &self.stats.lag_bytes,
            step.file_len
                .saturating_sub(self.stats.snapshot().checkpoint_offset),
        );
        let source = self.config.source.as_str();
        let path = self.config.tailer.path.as_path();
        let max_line = self.config.tailer.max_line_bytes;
        let mut records = Vec::new();
        let mut sent = Vec::new();
        let mut quarantined = 0usize;
        for item in &step.items {
            match item {
                TailItem::Line(line) => {
                    CollectorStats::add(&self.stats.lines_read, 1);
                    CollectorStats::add(&self.stats.bytes_read, line.end - line.offset);
                    let origin = LineOrigin {
                        source,
                        path,
                        file: step.identity,
                        offset: line.offset,
                    };
                    match self.processor.process(&line.bytes, &origin) {
                        LineOutcome::Publish(record)
                            if record.payload.len() > self.config.max_envelope_bytes =>
                        {
                            CollectorStats::add(&self.stats.envelopes_oversize, 1);
                            let reason = format!(
                                "envelope over {} bytes: {} bytes sealed from a line of {} bytes",
                                self.config.max_envelope_bytes,
                                record.payload.len(),
                                line.bytes.len()
                            );
                            tracing::warn!(
                                path = %path.display(),
                                offset = line.offset,
                                envelope_bytes = record.payload.len(),
                                max_envelope_bytes = self.config.max_envelope_bytes,
                                "envelope too large for the bus; line quarantined"
                            );
                            self.reject_line(line, &reason)?;
                            quarantined += 1;
                        }
                        LineOutcome::Publish(record) => {
                            // A copy: the record goes into the bus, and should the bus refuse
                            // it the payload is what is quarantined.
                            sent.push(SentRecord {
                                offset: line.offset,
                                length: line.bytes.len() as u64,
                                payload: record.payload.clone(),
                            });
                            records.push(record);
                        }
                        LineOutcome::Reject { reason } => {
                            CollectorStats::add(&self.stats.rejected, 1);
                            self.reject_line(line, &reason)?;
                            quarantined += 1;
                        }
                    }
                }
                TailItem::Oversize(oversize) => {
                    CollectorStats::add(&self.stats.oversize, 1);
                    CollectorStats::add(&self.stats.bytes_read, oversize.end - oversize.offset);
                    let reason = format!(
                        "line of {} bytes is longer than the maximum of {max_line} bytes",
                        oversize.len()
                    );
                    tracing::warn!(
                        path = %path.display(),
                        offset = oversize.offset,
                        length = oversize.len(),
                        "oversize line quarantined and skipped"
                    );
                    self.quarantine.quarantine(&QuarantineItem {
                        kind: QuarantineKind::Oversize,
                        reason: &reason,
                        source,
                        path,
                        offset: oversize.offset,
                        length: oversize.len(),
                        bytes: &oversize.head,
                    })?;
                    quarantined += 1;
                }
                TailItem::Rotated { unterminated_bytes } => {
                    CollectorStats::add(&self.stats.rotations, 1);
                    if *unterminated_bytes > 0 {
                        tracing::warn!(
                            path = %path.display(),
                            unterminated_bytes,
                            "rotated file ended without a newline; its last bytes are dropped"
                        );
                    }
                }
                TailItem::Truncated {
                    read_up_to,
                    file_len,
                } => {
                    CollectorStats::add(&self.stats.truncations, 1);
                    tracing::warn!(
                        path = %path.display(),
                        read_up_to,
                        file_len,
                        "file was truncated, reading it again from the start"
                    );
                }
            }
        }
        let Some(end) = step.end else {
            return Ok((None, quarantined > 0));
        };
        let pending = InFlight {
            identity: step.identity,
            end,
            file_len: step.file_len,
            sent,
            receipt: DeliveryReceipt::resolved(0, Ok(())),
        };
        Ok((Some((pending, records)), quarantined > 0))
    }

    /// Publishes a batch; `Ok(None)` if shutdown came while the bus made us wait.
    async fn publish(
        &self,
        shutdown: &CancellationToken,
        mut batch: InFlight,
        records: Vec<Record>,
    ) -> Result<Option<InFlight>, CollectorError> {
        if records.is_empty() {
            // Only quarantined lines: nothing to deliver, the batch keeps its place in the
            // queue so that the checkpoint still moves in order.
            return Ok(Some(batch));
        }
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Ok(None),
            receipt = self.transport.publish(records) => {
                batch.receipt = receipt?;
                Ok(Some(batch))
            }
        }
    }

    /// Waits for shutdown, the oldest receipt, or (with `poll`) the next look at the file.
    async fn wait(
        &self,
        shutdown: &CancellationToken,
        in_flight: &mut VecDeque<InFlight>,
        poll: Option<Duration>,
    ) -> Wake {
        let head = async {
            match in_flight.front_mut() {
                Some(head) => head.receipt.delivered().await,
                None => std::future::pending().await,
            }
        };
        let poll = async {
            match poll {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = shutdown.cancelled() => Wake::Shutdown,
            outcome = head => Wake::Receipt(outcome),
            () = poll => Wake::Poll,
        }
    }

    /// Handles the awaited outcome of the oldest batch, then settles what followed it.
    async fn head_resolved(
        &self,
        outcome: Result<Delivered, BusError>,
        in_flight: &mut VecDeque<InFlight>,
    ) -> Result<(), CollectorError> {
        let delivered = outcome?;
        let mut quarantined = false;
        let head = in_flight.pop_front();
        if let Some(head) = &head {
            quarantined = self.delivered(head, delivered)?;
        }
        self.settle_ready(in_flight, head, quarantined).await
    }

    /// Takes every batch at the front of the queue whose receipt resolved, in order, and
    /// commits the checkpoint once, at the end of the last of them (or of `done`, a batch
    /// already taken off the queue; `quarantined` says whether settling it quarantined
    /// anything).
    async fn settle_ready(
        &self,
        in_flight: &mut VecDeque<InFlight>,
        mut done: Option<InFlight>,
        mut quarantined: bool,
    ) -> Result<(), CollectorError> {
        let mut failure = None;
        while let Some(head) = in_flight.front_mut() {
            match head.receipt.try_delivered() {
                None => break,
                Some(Ok(delivered)) => {
                    let head = in_flight.pop_front();
                    if let Some(head) = &head {
                        match self.delivered(head, delivered) {
                            Ok(refused) => quarantined |= refused,
                            Err(error) => {
                                // Not acknowledged: the checkpoint stays before this batch.
                                failure = Some(error);
                                break;
                            }
                        }
                    }
                    done = head;
                }
                Some(Err(error)) => {
                    failure = Some(error.into());
                    break;
                }
            }
        }
        // What was acknowledged before a failure is still committed.
        if let Some(done) = done {
            if quarantined {
                // The checkpoint passing a refused record makes its quarantine entry the only
                // copy left, so the entry must be durable first.
                self.sync_quarantine().await?;
            }
            self.commit(&done).await?;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Accounts for a batch the bus resolved: counts what it delivered and quarantines what it
    /// refused for good. Returns whether anything was quarantined (the caller syncs the
    /// quarantine before the checkpoint passes the batch).
    fn delivered(&self, batch: &InFlight, delivered: Delivered) -> Result<bool, CollectorError> {
        let mut refused = delivered.refused;
        // One verdict per record, whatever the bus sent: the counts must add up.
        refused.sort_unstable_by_key(|refusal| refusal.index);
        refused.dedup_by_key(|refusal| refusal.index);
        let source = self.config.source.as_str();
        let path = self.config.tailer.path.as_path();
        let mut quarantined = 0usize;
        for &Refusal { index, reason } in &refused {
            let Some(record) = batch.sent.get(index) else {
                // A bus naming a record the batch does not have cannot be acted on; the rest
                // of its verdict still holds.
                tracing::error!(
                    path = %path.display(),
                    index,
                    records = batch.sent.len(),
                    %reason,
                    "the bus refused a record outside the batch; ignored"
                );
                continue;
            };
            let reason = format!("refused by the bus: {reason}");
            self.quarantine.quarantine(&QuarantineItem {
                kind: QuarantineKind::Rejected,
                reason: &reason,
                source,
                path,
                offset: record.offset,
                length: record.length,
                bytes: &record.payload,
            })?;
            quarantined += 1;
        }
        if let Some(first) = refused.first() {
            // One line per batch: a misconfigured limit can refuse every record.
            tracing::warn!(
                path = %path.display(),
                refused = quarantined,
                records = batch.sent.len(),
                first_reason = %first.reason,
                "the bus refused records for good; quarantined"
            );
        }
        CollectorStats::add(&self.stats.envelopes_refused, quarantined as u64);
        CollectorStats::add(
            &self.stats.events_published,
            (batch.sent.len() - quarantined) as u64,
        );
        Ok(quarantined > 0)
    }

    /// Durably moves the checkpoint to the end of an acknowledged batch.
    async fn commit(&self, batch: &InFlight) -> Result<(), CollectorError> {
        let checkpoint = Arc::clone(&self.checkpoint);
        let path = self.config.tailer.path.clone();
        let (identity, end) = (batch.identity, batch.end);
        tokio::task::spawn_blocking(move || checkpoint.commit(&path, &identity, end))
            .await
            .map_err(CollectorError::Task)??;
        CollectorStats::set(&self.stats.checkpoint_offset, end);
        CollectorStats::set(&self.stats.lag_bytes, batch.file_len.saturating_sub(end));
        Ok(())
    }

    /// On shutdown: waits for the batches in flight, up to the drain timeout, and commits.
    async fn drain(&self, mut in_flight: VecDeque<InFlight>) -> Result<(), CollectorError> {
        let deadline = Instant::now() + self.config.drain_timeout;
        while let Some(head) = in_flight.front_mut() {
            match tokio::time::timeout_at(deadline, head.receipt.delivered()).await {
                Ok(outcome) => self.head_resolved(outcome, &mut in_flight).await?,
                Err(_elapsed) => {
                    tracing::warn!(
                        path = %self.config.tailer.path.display(),
                        batches = in_flight.len(),
                        "shutdown: batches not acknowledged in time will be read again on restart"
                    );
                    break;
                }
            }
        }
        Ok(())
    }
}

/// The blocking part of [`FileCollector::read_step`].
fn read_step(
    tailer: &mut FileTailer,
    checkpoint: &Checkpoint,
    max_items: usize,
) -> Result<Option<ReadStep>, CollectorError> {
    let mut started_at = None;
    if !tailer.is_started() {
        // First start after a restart in the middle of a rotation: the file checkpointed at
        // the path may have been renamed (or copied) away with an unread rest; finish it first.
        if let Some(previous) = checkpoint.identity_at(tailer.path())? {
            if let Some(offset) = checkpoint.offset(&previous)? {
                if tailer.recover_rotated(&previous, offset)?.is_some() {
                    started_at = Some(offset);
                }
            }
        }
    }
    if !tailer.is_started() {
        let Some(identity) = tailer.identify()? else {
            return Ok(None);
        };
        let path = tailer.path().to_owned();
        let resume = match checkpoint.offset(&identity)? {
            Some(offset) => Some(offset),
            None => match checkpoint.identity_at(&path)? {
                // Another file was read at this path before: this one replaced it (rotation),
                // and everything in it is new.
                Some(previous) if previous != identity => {
                    tracing::info!(
                        path = %path.display(),
                        previous = %previous,
                        current = %identity,
                        "a new file replaced the one checkpointed at this path, reading it from the start"
                    );
                    Some(0)
                }
                _ => None,
            },
        };
        let start = tailer.resume(resume)?;
        tracing::info!(path = %path.display(), file = %identity, offset = start, "tailing");
        started_at = Some(start);
    }
    // After a truncation the file is identified again once its new head is complete.
    let Some(identity) = tailer.identify()? else {
        return Ok(None);
    };
    let items = tailer.read(max_items)?;
    let switched = matches!(
        items.last(),
        Some(TailItem::Truncated { .. } | TailItem::Rotated { .. })
    );
    let end = if switched {
        items.iter().rev().find_map(|item| match item {
            TailItem::Line(line) => Some(line.end),
            TailItem::Oversize(oversize) => Some(oversize.end),
            TailItem::Truncated { .. } | TailItem::Rotated { .. } => None,
        })
    } else if items.is_empty() {
        None
    } else {
        // Past the last item, including the empty lines skipped after it.
        tailer.position()
    };
    Ok(Some(ReadStep {
        started_at,
        identity,
        end,
        file_len: tailer.file_len().unwrap_or(0),
        items,
    }))
}
