//! `ItemBatcher`: groups the selected items into child inputs `{"BatchInput": .., "Items": [..]}`
//! (`BatchInput` only when the definition gives one), each with at most `MaxItemsPerBatch` items
//! and at most `MaxInputBytesPerBatch` bytes of serialized input (never over AWS's 256 KiB). An
//! item too large for any batch still gets a batch of its own: no item is dropped.

use expressway_asl::load::MAX_INPUT_BYTES_PER_BATCH;
use expressway_asl::template::json_size;
use serde_json::{Map, Value};

/// The batch limits after evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct BatchLimits {
    pub(super) max_items: Option<u64>,
    pub(super) max_bytes: Option<u64>,
}

fn batch_value(batch_input: Option<&Value>, items: Vec<Value>) -> Value {
    let mut m = Map::with_capacity(2);
    if let Some(b) = batch_input {
        m.insert("BatchInput".into(), b.clone());
    }
    m.insert("Items".into(), Value::Array(items));
    Value::Object(m)
}

/// The child inputs, in item order.
pub(super) fn batches(
    items: Vec<Value>,
    limits: BatchLimits,
    batch_input: Option<&Value>,
) -> Vec<Value> {
    let max_items = limits.max_items.unwrap_or(u64::MAX).max(1) as usize;
    let max_bytes = limits
        .max_bytes
        .unwrap_or(MAX_INPUT_BYTES_PER_BATCH)
        .min(MAX_INPUT_BYTES_PER_BATCH) as usize;
    // the serialized size of a batch with no items
    let empty = json_size(&batch_value(batch_input, Vec::new()));
    let mut out = Vec::new();
    let mut current: Vec<Value> = Vec::new();
    let mut size = empty;
    for item in items {
        let add = json_size(&item) + usize::from(!current.is_empty());
        if !current.is_empty() && (current.len() >= max_items || size + add > max_bytes) {
            out.push(batch_value(batch_input, std::mem::take(&mut current)));
            size = empty;
        }
        size += json_size(&item) + usize::from(!current.is_empty());
        current.push(item);
    }
    if !current.is_empty() {
        out.push(batch_value(batch_input, current));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_by_count_and_by_bytes() {
        let by_count = batches(
            vec![json!(1), json!(2), json!(3)],
            BatchLimits {
                max_items: Some(2),
                max_bytes: None,
            },
            None,
        );
        assert_eq!(
            by_count,
            vec![json!({"Items": [1, 2]}), json!({"Items": [3]})]
        );
        // {"Items":[]} is 12 bytes; "aaaa" is 6, with a comma 7: two fit in 25, not three
        let items = vec![json!("aaaa"), json!("bbbb"), json!("cccc")];
        let by_bytes = batches(
            items,
            BatchLimits {
                max_items: None,
                max_bytes: Some(25),
            },
            Some(&json!({"k": 1})),
        );
        assert_eq!(by_bytes.len(), 3);
        assert_eq!(
            by_bytes[0],
            json!({"BatchInput": {"k": 1}, "Items": ["aaaa"]})
        );
    }
}
