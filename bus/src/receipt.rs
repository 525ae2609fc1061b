//! [`DeliveryReceipt`]: the promise a producer awaits before it moves its checkpoint.
//!
//! A receipt is the producer's half of a one-shot channel; the bus keeps the other half, a
//! [`ReceiptResolver`], and resolves it once the batch is durable downstream. This is the
//! batch-notifier idea of end-to-end acknowledgement: the bus only reports a status, and the
//! producer decides what to do with it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use crate::error::{BusError, RefusalReason};

/// One record of a batch that the bus refused for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// Position of the record in the batch given to
    /// [`Transport::publish`](crate::Transport::publish), from 0.
    pub index: usize,
    /// Why it was refused.
    pub reason: RefusalReason,
}

/// What a resolved [`DeliveryReceipt`] reports: every record of the batch is durable
/// downstream except those in [`refused`](Self::refused).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Records refused for good, in batch order. They will never be delivered: the producer
    /// quarantines them and may move its checkpoint past them with the rest of the batch.
    pub refused: Vec<Refusal>,
}

impl Delivered {
    /// Every record delivered.
    pub fn all() -> Delivered {
        Delivered::default()
    }

    /// Whether every record of the batch was delivered.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty()
    }

    /// The outcome for a producer that cannot quarantine: a refused record fails the batch
    /// (the first one is named).
    fn into_complete(self) -> Result<(), BusError> {
        match self.refused.first() {
            None => Ok(()),
            Some(&Refusal { index, reason }) => Err(BusError::Refused { index, reason }),
        }
    }
}

/// Resolves once a published batch is durable downstream, or reports why it never will be.
///
/// Two ways to wait, one outcome:
///
/// - [`delivered`](Self::delivered) (and [`try_delivered`](Self::try_delivered) without
///   waiting) resolves to [`Delivered`], which names the records the bus refused for good
///   (Kafka's message size limit, say) while the rest of the batch is durable. A producer
///   that quarantines those records uses this and never stops on one record.
/// - Awaiting the receipt itself (it is a [`Future`]), or [`try_result`](Self::try_result),
///   treats a refused record as a failure of the batch: [`BusError::Refused`].
///
/// If the bus goes away before resolving it, the receipt resolves to [`BusError::Closed`]:
/// the batch must then be treated as not delivered.
#[derive(Debug)]
#[must_use = "a receipt tells when the batch is durable; dropping it loses that"]
pub struct DeliveryReceipt {
    state: ReceiptState,
    records: usize,
}

#[derive(Debug)]
enum ReceiptState {
    Pending(oneshot::Receiver<Result<Delivered, BusError>>),
    Done(Option<Result<Delivered, BusError>>),
}

/// The bus's half of a [`DeliveryReceipt`]; resolving it wakes the producer.
#[derive(Debug)]
pub struct ReceiptResolver {
    sender: oneshot::Sender<Result<Delivered, BusError>>,
}

impl DeliveryReceipt {
    /// Creates a pending receipt for a batch of `records` records and the resolver that
    /// completes it.
    pub fn pending(records: usize) -> (ReceiptResolver, DeliveryReceipt) {
        let (sender, receiver) = oneshot::channel();
        (
            ReceiptResolver { sender },
            DeliveryReceipt {
                state: ReceiptState::Pending(receiver),
                records,
            },
        )
    }

    /// Creates a receipt that has already resolved with `result` (every record delivered,
    /// or the batch failed).
    pub fn resolved(records: usize, result: Result<(), BusError>) -> DeliveryReceipt {
        DeliveryReceipt::resolved_delivered(records, result.map(|()| Delivered::all()))
    }

    /// Creates a receipt that has already resolved with `result`, refusals included.
    pub fn resolved_delivered(
        records: usize,
        result: Result<Delivered, BusError>,
    ) -> DeliveryReceipt {
        DeliveryReceipt {
            state: ReceiptState::Done(Some(result)),
            records,
        }
    }

    /// Number of records in the batch this receipt is for.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Returns the outcome if the receipt has resolved, without waiting; a refused record
    /// is a [`BusError::Refused`] (see [`try_delivered`](Self::try_delivered)).
    ///
    /// The outcome is handed out once: after it was returned (here or by awaiting), further
    /// calls return `Some(Err(BusError::Closed))`.
    pub fn try_result(&mut self) -> Option<Result<(), BusError>> {
        self.try_delivered()
            .map(|outcome| outcome.and_then(Delivered::into_complete))
    }

    /// Returns the outcome, refusals included, if the receipt has resolved, without waiting.
    ///
    /// The outcome is handed out once, like [`try_result`](Self::try_result)'s.
    pub fn try_delivered(&mut self) -> Option<Result<Delivered, BusError>> {
        match &mut self.state {
            ReceiptState::Pending(receiver) => match receiver.try_recv() {
                Ok(result) => {
                    self.state = ReceiptState::Done(None);
                    Some(result)
                }
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    self.state = ReceiptState::Done(None);
                    Some(Err(BusError::Closed))
                }
            },
            ReceiptState::Done(result) => Some(result.take().unwrap_or(Err(BusError::Closed))),
        }
    }

    /// Waits for the outcome, refusals included. Cancel-safe: dropping the future before it
    /// completes leaves the receipt pending.
    ///
    /// The outcome is handed out once, like [`try_result`](Self::try_result)'s.
    pub async fn delivered(&mut self) -> Result<Delivered, BusError> {
        std::future::poll_fn(|cx| self.poll_delivered(cx)).await
    }

    fn poll_delivered(&mut self, cx: &mut Context<'_>) -> Poll<Result<Delivered, BusError>> {
        match &mut self.state {
            ReceiptState::Pending(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(outcome) => {
                    self.state = ReceiptState::Done(None);
                    // A dropped resolver means the bus went away without a verdict.
                    Poll::Ready(outcome.unwrap_or(Err(BusError::Closed)))
                }
            },
            ReceiptState::Done(result) => {
                Poll::Ready(result.take().unwrap_or(Err(BusError::Closed)))
            }
        }
    }
}

impl Future for DeliveryReceipt {
    type Output = Result<(), BusError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut()
            .poll_delivered(cx)
            .map(|outcome| outcome.and_then(Delivered::into_complete))
    }
}

impl ReceiptResolver {
    /// Resolves the receipt: every record delivered, or the batch failed. A producer that
    /// already dropped its receipt is not an error: it chose not to wait.
    pub fn resolve(self, result: Result<(), BusError>) {
        self.resolve_delivered(result.map(|()| Delivered::all()));
    }

    /// Resolves the receipt with the records refused for good, if any.
    pub fn resolve_delivered(self, result: Result<Delivered, BusError>) {
        let _ = self.sender.send(result);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_with_the_resolvers_verdict() {
        let (resolver, mut receipt) = DeliveryReceipt::pending(3);
        assert_eq!(receipt.records(), 3);
        assert_eq!(receipt.try_result(), None);
        resolver.resolve(Ok(()));
        assert_eq!(receipt.await, Ok(()));
    }

    #[tokio::test]
    async fn dropped_resolver_means_closed() {
        let (resolver, receipt) = DeliveryReceipt::pending(1);
        drop(resolver);
        assert_eq!(receipt.await, Err(BusError::Closed));
    }

    fn refusal(index: usize) -> Refusal {
        Refusal {
            index,
            reason: RefusalReason::OverProducerLimit {
                bytes: 2000,
                limit: 1000,
            },
        }
    }

    #[tokio::test]
    async fn delivered_names_the_refused_records() {
        let (resolver, mut receipt) = DeliveryReceipt::pending(3);
        resolver.resolve_delivered(Ok(Delivered {
            refused: vec![refusal(1)],
        }));
        let delivered = receipt.delivered().await.expect("resolved");
        assert!(!delivered.is_complete());
        assert_eq!(delivered.refused, vec![refusal(1)]);
        // Handed out once.
        assert_eq!(receipt.try_delivered(), Some(Err(BusError::Closed)));
    }

    #[tokio::test]
    async fn awaiting_the_receipt_makes_a_refusal_a_failure() {
        let (resolver, receipt) = DeliveryReceipt::pending(3);
        resolver.resolve_delivered(Ok(Delivered {
            refused: vec![refusal(2), refusal(0)],
        }));
        let reason = refusal(2).reason;
        assert_eq!(receipt.await, Err(BusError::Refused { index: 2, reason }));
    }

    #[test]
    fn try_result_makes_a_refusal_a_failure_and_try_delivered_does_not() {
        let refused = Delivered {
            refused: vec![refusal(0)],
        };
        let mut strict = DeliveryReceipt::resolved_delivered(1, Ok(refused.clone()));
        assert!(matches!(
            strict.try_result(),
            Some(Err(BusError::Refused { index: 0, .. }))
        ));
        let mut lenient = DeliveryReceipt::resolved_delivered(1, Ok(refused.clone()));
        assert_eq!(lenient.try_delivered(), Some(Ok(refused)));
    }

    #[tokio::test]
    async fn a_complete_delivery_is_ok_both_ways() {
        let (resolver, mut receipt) = DeliveryReceipt::pending(2);
        assert_eq!(receipt.try_delivered(), None);
        resolver.resolve(Ok(()));
        assert_eq!(receipt.delivered().await, Ok(Delivered::all()));
    }

    #[test]
    fn resolved_receipt_is_ready() {
        let mut receipt = DeliveryReceipt::resolved(0, Ok(()));
        assert_eq!(receipt.try_result(), Some(Ok(())));
    }
}
