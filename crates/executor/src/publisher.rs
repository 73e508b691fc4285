//! `kafka:publish` on a real cluster: the rdkafka implementation of
//! [`expressway_tasks::KafkaPublisher`]. The future completes when the brokers acknowledge the
//! record (idempotent producer, `acks=all`). Under `--guarantee exactly-once`, a record published
//! by a running execution goes through the pod's transactional producer instead, in the
//! execution's transaction ([`crate::exactly_once`]).

use crate::config::ExecutorConfig;
use crate::exactly_once::SendError;
use expressway_tasks::{KafkaPublisher, KafkaRecord, PublishAck, PublishError};
use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use std::time::Duration;

/// Publishes Task records with their own idempotent producer.
pub struct RdKafkaPublisher {
    producer: FutureProducer,
}

impl RdKafkaPublisher {
    /// A producer with the executor's broker and librdkafka settings.
    pub fn new(config: &ExecutorConfig) -> Result<RdKafkaPublisher, KafkaError> {
        let producer = crate::pod::client_config(
            config,
            &[("linger.ms", "5"), ("client.id", "expressway-tasks")],
            &[("enable.idempotence", "true"), ("acks", "all")],
        )
        .create()?;
        Ok(RdKafkaPublisher { producer })
    }
}

fn classify(e: &KafkaError) -> PublishError {
    match e.rdkafka_error_code() {
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            PublishError::UnknownTopic(e.to_string())
        }
        Some(RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize) => {
            PublishError::MessageTooLarge(e.to_string())
        }
        _ => PublishError::Failed(e.to_string()),
    }
}

impl KafkaPublisher for RdKafkaPublisher {
    fn publish(&self, record: KafkaRecord) -> BoxFuture<'static, Result<PublishAck, PublishError>> {
        // `--guarantee exactly-once`: inside an execution, the record joins its transaction.
        if let Some(ticket) = crate::exactly_once::current() {
            return Box::pin(async move {
                let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
                for (k, v) in &record.headers {
                    headers = headers.insert(Header {
                        key: k,
                        value: Some(v),
                    });
                }
                match ticket
                    .send(
                        &record.topic,
                        None,
                        record.key.as_deref(),
                        Some(&record.value),
                        Some(headers),
                    )
                    .await
                {
                    Ok((partition, offset)) => Ok(PublishAck { partition, offset }),
                    Err(SendError::TooLarge) => {
                        Err(PublishError::MessageTooLarge("record too large".into()))
                    }
                    Err(SendError::Failed(e)) => Err(classify(&e)),
                    Err(SendError::Refused) => Err(PublishError::Failed(
                        "the execution's transaction was aborted".into(),
                    )),
                }
            });
        }
        let producer = self.producer.clone();
        Box::pin(async move {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (k, v) in &record.headers {
                headers = headers.insert(Header {
                    key: k,
                    value: Some(v),
                });
            }
            let mut fr = FutureRecord::to(&record.topic)
                .payload(&record.value)
                .headers(headers);
            if let Some(k) = &record.key {
                fr = fr.key(k);
            }
            match producer.send(fr, Duration::from_secs(30)).await {
                Ok(delivery) => Ok(PublishAck {
                    partition: delivery.partition,
                    offset: delivery.offset,
                }),
                Err((e, _)) => Err(classify(&e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka is built with OpenSSL (rdkafka's `ssl-vendored`): TLS and SASL/SCRAM settings
    /// are accepted. Without it, creating the client fails with "OpenSSL not available at build
    /// time". Creating a producer does not connect, so no broker is needed.
    #[test]
    fn tls_and_sasl_scram_are_built_in() {
        for settings in [
            vec![("security.protocol", "SSL")],
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            vec![
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
            ],
        ] {
            let mut config = ExecutorConfig::new("127.0.0.1:1");
            config.kafka = settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            if let Err(e) = RdKafkaPublisher::new(&config) {
                panic!("{settings:?}: {e}");
            }
        }
    }
}
