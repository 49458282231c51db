//! `berth backup` and `berth restore`: every collection of berth's database, GridFS files
//! included, in one file.
//!
//! The file is `berth-backup v1\n` followed by BSON documents `{"collection", "doc"}`, sorted
//! by collection and `_id`, and a closing `{"end": {collection: count}}` that tells a complete
//! file from a cut one. It has no timestamp, so backing up a restored database gives the
//! same bytes. While the service runs, tasks and models are read before the GridFS files
//! they name (files are written before the documents that point at them), and a model whose
//! file vanished meanwhile (deleted during the backup) is left out, so a restore never has
//! a model without its weights.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;

use anyhow::{Context, Result, bail};
use futures_util::TryStreamExt;
use mongodb::Database;
use mongodb::bson::{Bson, Document, doc};

/// The collections, in the order they are read.
const COLLECTIONS: [&str; 6] = ["tasks", "models", "deployments", "metrics", "fs.files", "fs.chunks"];
const MAGIC: &[u8] = b"berth-backup v1\n";

/// Documents per collection.
pub type Counts = BTreeMap<String, u64>;

async fn read_all(db: &Database, name: &str) -> Result<Vec<Document>> {
    let cursor = db.collection::<Document>(name).find(doc! {}).sort(doc! {"_id": 1}).await?;
    Ok(cursor.try_collect().await?)
}

fn object_id(doc: &Document, field: &str) -> Option<Bson> {
    doc.get(field).filter(|v| !matches!(v, Bson::Null)).cloned()
}

/// The backup file of `db`.
pub async fn backup(db: &Database) -> Result<(Vec<u8>, Counts)> {
    let mut data: BTreeMap<&str, Vec<Document>> = BTreeMap::new();
    for name in COLLECTIONS {
        data.insert(name, read_all(db, name).await.with_context(|| format!("reading `{name}`"))?);
    }
    let files: BTreeSet<String> =
        data["fs.files"].iter().filter_map(|f| f.get("_id")).map(|id| id.to_string()).collect();
    let has_file =
        |doc: &Document, field: &str| object_id(doc, field).is_none_or(|id| files.contains(&id.to_string()));
    let models = data.get_mut("models").expect("models is read");
    models.retain(|m| has_file(m, "weights_file"));
    let mut out = MAGIC.to_vec();
    let mut counts = Counts::new();
    for (name, docs) in &data {
        for doc in docs {
            doc! {"collection": *name, "doc": doc}.to_writer(&mut out)?;
        }
        counts.insert(name.to_string(), docs.len() as u64);
    }
    let end: Document = counts.iter().map(|(k, v)| (k.clone(), Bson::Int64(*v as i64))).collect();
    doc! {"end": end}.to_writer(&mut out)?;
    Ok((out, counts))
}

/// The documents of a backup file by collection, checked to be whole.
fn parse(bytes: &[u8]) -> Result<BTreeMap<String, Vec<Document>>> {
    let body = bytes.strip_prefix(MAGIC).context("not a berth backup (no `berth-backup v1` line)")?;
    let mut reader = Cursor::new(body);
    let mut data: BTreeMap<String, Vec<Document>> = BTreeMap::new();
    loop {
        if reader.position() as usize >= body.len() {
            bail!("the backup is cut short: it has no closing record");
        }
        let record = Document::from_reader(&mut reader).context("a damaged record in the backup")?;
        if let Ok(end) = record.get_document("end") {
            for (name, count) in end {
                let found = data.get(name).map_or(0, Vec::len) as i64;
                if count.as_i64() != Some(found) {
                    bail!("the backup says `{name}` has {count} documents but holds {found}");
                }
            }
            return Ok(data);
        }
        let name = record.get_str("collection").context("a record without `collection`")?;
        if !COLLECTIONS.contains(&name) {
            bail!("the backup holds an unknown collection `{name}`");
        }
        let doc = record.get_document("doc").context("a record without `doc`")?.clone();
        data.entry(name.to_string()).or_default().push(doc);
    }
}

/// Restores a backup into `db`. A database that already holds berth's data is refused
/// unless `replace`, which empties those collections first. Nothing is written before the
/// whole file has been read and checked.
pub async fn restore(db: &Database, bytes: &[u8], replace: bool) -> Result<Counts> {
    let data = parse(bytes)?;
    for name in COLLECTIONS {
        let existing = db.collection::<Document>(name).estimated_document_count().await?;
        if existing > 0 && !replace {
            bail!(
                "database `{}` is not empty (`{name}` has {existing} documents); restore into an empty one, \
                 or pass --replace to wipe it first",
                db.name()
            );
        }
    }
    let mut counts = Counts::new();
    for name in COLLECTIONS {
        let collection = db.collection::<Document>(name);
        if replace {
            collection.delete_many(doc! {}).await.with_context(|| format!("emptying `{name}`"))?;
        }
        let docs = data.get(name).cloned().unwrap_or_default();
        counts.insert(name.to_string(), docs.len() as u64);
        if !docs.is_empty() {
            collection.insert_many(docs).await.with_context(|| format!("writing `{name}`"))?;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_or_foreign_file_is_refused_before_anything_is_written() {
        assert!(parse(b"PK\x03\x04").unwrap_err().to_string().contains("not a berth backup"));
        let mut bytes = MAGIC.to_vec();
        doc! {"collection": "tasks", "doc": {"_id": 1}}.to_writer(&mut bytes).unwrap();
        assert!(parse(&bytes).unwrap_err().to_string().contains("cut short"));
        doc! {"end": {"tasks": 2_i64}}.to_writer(&mut bytes).unwrap();
        assert!(parse(&bytes).unwrap_err().to_string().contains("has 2 documents but holds 1"));
        let mut whole = MAGIC.to_vec();
        doc! {"collection": "tasks", "doc": {"_id": 1}}.to_writer(&mut whole).unwrap();
        doc! {"end": {"tasks": 1_i64}}.to_writer(&mut whole).unwrap();
        assert_eq!(parse(&whole).unwrap()["tasks"].len(), 1);
    }
}
