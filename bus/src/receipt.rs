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

use crate::error::BusError;

/// Resolves once a published batch is durable downstream, or reports why it never will be.
///
/// Await it (it is a [`Future`]) or poll it without waiting with [`DeliveryReceipt::try_result`].
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
    Pending(oneshot::Receiver<Result<(), BusError>>),
    Done(Option<Result<(), BusError>>),
}

/// The bus's half of a [`DeliveryReceipt`]; resolving it wakes the producer.
#[derive(Debug)]
pub struct ReceiptResolver {
    sender: oneshot::Sender<Result<(), BusError>>,
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

    /// Creates a receipt that has already resolved with `result`.
    pub fn resolved(records: usize, result: Result<(), BusError>) -> DeliveryReceipt {
        DeliveryReceipt {
            state: ReceiptState::Done(Some(result)),
            records,
        }
    }

    /// Number of records in the batch this receipt is for.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Returns the outcome if the receipt has resolved, without waiting.
    ///
    /// The outcome is handed out once: after it was returned (here or by awaiting), further
    /// calls return `Some(Err(BusError::Closed))`.
    pub fn try_result(&mut self) -> Option<Result<(), BusError>> {
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
}

impl Future for DeliveryReceipt {
    type Output = Result<(), BusError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            ReceiptState::Pending(receiver) => match Pin::new(receiver).poll(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(outcome) => {
                    this.state = ReceiptState::Done(None);
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

impl ReceiptResolver {
    /// Resolves the receipt. A producer that already dropped its receipt is not an error:
    /// it chose not to wait.
    pub fn resolve(self, result: Result<(), BusError>) {
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

    #[test]
    fn resolved_receipt_is_ready() {
        let mut receipt = DeliveryReceipt::resolved(0, Ok(()));
        assert_eq!(receipt.try_result(), Some(Ok(())));
    }
}
