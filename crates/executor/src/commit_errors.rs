//! What a refused offset commit means, logged at the level it deserves.
//!
//! A commit the group coordinator refuses because this consumer is no longer the member it
//! was (`UnknownMemberId`: removed from the group after `session.timeout.ms` without a
//! heartbeat, e.g. a SIGSTOPped pod that was resumed; `IllegalGeneration` /
//! `RebalanceInProgress`: the group moved to a new generation, e.g. while every pod stops at
//! once) loses nothing: every record whose offset is not committed is re-run by the partition's
//! next owner, from the last committed offset, under the same execution ARN. It costs
//! duplicates: the records this pod finished since its last successful commit. Logged as a
//! warning with that explanation; any other commit failure is an error (same consequence, but
//! not an expected one).

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// Whether the coordinator refused the commit because this member was fenced out of the
/// group (removed, or an older generation).
pub(crate) fn is_fenced(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress
                | RDKafkaErrorCode::FencedInstanceId
        )
    )
}

/// Logs a failed commit of `what` (`"revoked partitions"`, `"final offsets"`, ...).
pub(crate) fn log_commit_failure(what: &str, e: &KafkaError) {
    if is_fenced(e) {
        tracing::warn!(
            error = %e,
            "commit of {what} refused: this pod is no longer that member of the consumer group \
             (removed after session.timeout.ms, or the group rebalanced meanwhile); nothing is \
             lost, the partitions' next owners re-run the records finished since the last \
             successful commit (duplicates with the same execution ARNs)"
        );
    } else {
        tracing::error!(
            error = %e,
            "commit of {what} failed; the records finished since the last successful commit \
             will be re-run by the next owner (duplicates with the same execution ARNs)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_fencing_errors_are_recognised() {
        for code in [
            RDKafkaErrorCode::UnknownMemberId,
            RDKafkaErrorCode::IllegalGeneration,
            RDKafkaErrorCode::RebalanceInProgress,
        ] {
            assert!(is_fenced(&KafkaError::ConsumerCommit(code)), "{code:?}");
        }
        assert!(!is_fenced(&KafkaError::ConsumerCommit(
            RDKafkaErrorCode::BrokerTransportFailure
        )));
        assert!(!is_fenced(&KafkaError::ConsumerCommit(
            RDKafkaErrorCode::NoOffset
        )));
    }
}
