//! `FaultStore` against `object_store::memory::InMemory`: each fault kind
//! happens at about its configured rate and is counted, faults are
//! realistic (short bodies, valid listings, writes that happened), and
//! disabled or default means pass-through.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use futures::TryStreamExt;
use ltx_compactor::faults::{injected, FaultConfig, FaultKind, FaultStats, FaultStore};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    Error, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload,
};

const N: u64 = 2000;

fn key(i: u64) -> Path {
    Path::from(format!("db/ltx/0/{i:016x}-{i:016x}.ltx"))
}

fn body(i: u64) -> Vec<u8> {
    (0..100 + i % 50).map(|j| (i + j) as u8).collect()
}

async fn filled(n: u64) -> Arc<InMemory> {
    let m = Arc::new(InMemory::new());
    for i in 0..n {
        m.put(&key(i), body(i).into()).await.unwrap();
    }
    m
}

/// `count` out of `n` is within 4 standard deviations of `pct` %.
fn near(count: u64, n: u64, pct: f64, what: &str) {
    let p = pct / 100.0;
    let mean = n as f64 * p;
    let sd = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
    assert!(
        (count as f64 - mean).abs() <= 4.0 * sd,
        "{what}: {count} of {n}, expected about {mean:.0} (±{:.0})",
        4.0 * sd
    );
}

#[tokio::test]
async fn failures_at_their_rates_and_counted() {
    let inner = filled(10).await;
    let s = FaultStore::new(
        inner,
        FaultConfig {
            seed: 42,
            fail_pct: 20.0,
            permanent_pct: 25.0,
            ..FaultConfig::default()
        },
    );
    let (mut transient, mut permanent, mut ok) = (0u64, 0u64, 0u64);
    for i in 0..N {
        match s.get(&key(i % 10)).await {
            Ok(r) => {
                assert_eq!(r.bytes().await.unwrap(), body(i % 10));
                ok += 1;
            }
            Err(e) => {
                let f = injected(&e).expect("only injected errors");
                match (f.kind, &e) {
                    (FaultKind::Transient, Error::Generic { store, .. }) => {
                        assert_eq!(*store, "FaultStore");
                        assert!(e
                            .to_string()
                            .contains("injected transient fault (retryable)"));
                        transient += 1;
                    }
                    (FaultKind::Permanent, Error::PermissionDenied { path, .. }) => {
                        assert_eq!(path, &key(i % 10).to_string());
                        assert!(e.to_string().contains("injected permanent fault"));
                        permanent += 1;
                    }
                    other => panic!("unexpected fault {other:?}"),
                }
            }
        }
    }
    let st = s.stats();
    assert_eq!(st.requests, N);
    assert_eq!((st.transient, st.permanent), (transient, permanent));
    assert_eq!(ok + transient + permanent, N);
    near(transient + permanent, N, 20.0, "failures");
    near(permanent, transient + permanent, 25.0, "permanent share");
    assert_eq!(
        (st.truncated, st.duplicated, st.fail_after_write),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn same_seed_same_faults() {
    let run = || async {
        let s = FaultStore::new(
            filled(5).await,
            FaultConfig {
                seed: 9,
                fail_pct: 30.0,
                permanent_pct: 50.0,
                truncate_pct: 30.0,
                ..FaultConfig::default()
            },
        );
        let mut out = Vec::new();
        for i in 0..200 {
            out.push(match s.get(&key(i % 5)).await {
                Ok(r) => Ok(r.bytes().await.unwrap()),
                Err(e) => Err(e.to_string()),
            });
        }
        (out, s.stats())
    };
    let (a, sa) = run().await;
    let (b, sb) = run().await;
    assert_eq!(a, b);
    assert_eq!(sa, sb);
}

#[tokio::test]
async fn truncated_gets_are_really_shorter() {
    let inner = filled(10).await;
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 3,
            truncate_pct: 10.0,
            ..FaultConfig::default()
        },
    );
    let mut short = 0;
    for i in 0..N {
        let k = key(i % 10);
        let want = body(i % 10);
        // Alternate whole GETs, ranged GETs and get_ranges. Each body must
        // be a prefix of what was asked.
        let prefix = |got: &[u8], full: &[u8]| {
            assert!(full.starts_with(got), "a truncated body is a prefix");
            got.len() < full.len()
        };
        let shorter = match i % 3 {
            0 => {
                let r = s.get(&k).await.unwrap();
                assert_eq!(r.range, 0..want.len() as u64, "the range is as asked");
                assert_eq!(r.meta.size, want.len() as u64);
                prefix(&r.bytes().await.unwrap(), &want)
            }
            1 => {
                let r = s
                    .get_opts(&k, GetOptions::new().with_range(Some(10..60u64)))
                    .await
                    .unwrap();
                assert_eq!(r.range, 10..60);
                // Through the stream too (not only `bytes()`).
                let chunks: Vec<_> = r.into_stream().try_collect().await.unwrap();
                prefix(&chunks.concat(), &want[10..60])
            }
            _ => {
                let ranges = [0..5usize, 20..70, 70..71];
                let asked: Vec<_> = ranges
                    .iter()
                    .map(|r| r.start as u64..r.end as u64)
                    .collect();
                let rs = s.get_ranges(&k, &asked).await.unwrap();
                assert_eq!(rs.len(), 3);
                let cut: Vec<bool> = rs
                    .iter()
                    .zip(ranges)
                    .map(|(r, range)| prefix(r, &want[range]))
                    .collect();
                assert!(
                    cut.iter().filter(|&&c| c).count() <= 1,
                    "at most one range cut"
                );
                cut.contains(&true)
            }
        };
        short += u64::from(shorter);
    }
    let st = s.stats();
    assert_eq!(st.truncated, short, "every counted truncation is shorter");
    near(short, N, 10.0, "truncations");
    // HEAD requests are never truncated and still work.
    let h = s.head(&key(0)).await.unwrap();
    assert_eq!(h.size, body(0).len() as u64);
}

#[tokio::test]
async fn disabled_and_default_are_pass_through() {
    let inner = filled(20).await;
    let cfg = FaultConfig {
        seed: 1,
        fail_pct: 50.0,
        permanent_pct: 50.0,
        truncate_pct: 50.0,
        shuffle_listings: true,
        duplicate_pct: 50.0,
        fail_after_write_pct: 50.0,
        max_delay_ms: 1,
        page_fail_pct: 50.0,
    };
    let off = FaultStore::new(inner.clone(), cfg);
    off.set_enabled(false);
    let dflt = FaultStore::new(inner.clone(), FaultConfig::default());
    for s in [&off, &dflt] {
        let listed = |st: &dyn ObjectStore| {
            st.list(Some(&Path::from("db")))
                .map(|m| m.unwrap().location)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            listed(s).await,
            listed(inner.as_ref()).await,
            "same order too"
        );
        let a = s
            .list_with_delimiter(Some(&Path::from("db/ltx/0")))
            .await
            .unwrap();
        let b = inner
            .list_with_delimiter(Some(&Path::from("db/ltx/0")))
            .await
            .unwrap();
        assert_eq!(a.objects, b.objects);
        assert_eq!(a.common_prefixes, b.common_prefixes);
        for i in 0..20 {
            let x = s.get(&key(i)).await.unwrap().bytes().await.unwrap();
            assert_eq!(x, body(i));
            let r = s.get_ranges(&key(i), &[1..9, 3..50]).await.unwrap();
            assert_eq!(r, inner.get_ranges(&key(i), &[1..9, 3..50]).await.unwrap());
        }
        s.put(&Path::from("x"), "1".into()).await.unwrap();
        assert!(matches!(
            s.get(&Path::from("missing")).await,
            Err(Error::NotFound { .. })
        ));
    }
    assert_eq!(
        off.stats(),
        FaultStats::default(),
        "nothing drawn or counted"
    );
    assert_eq!(dflt.stats().requests, 20 * 2 + 4);
    assert_eq!(
        FaultStats {
            requests: 0,
            ..dflt.stats()
        },
        FaultStats::default()
    );
    // Turned on again: faults come back.
    off.set_enabled(true);
    let mut errs = 0;
    for i in 0..50 {
        errs += usize::from(off.get(&key(i % 20)).await.is_err());
    }
    assert!(errs > 0);
}

#[tokio::test]
async fn listings_shuffled_and_duplicated_hold_the_inner_set() {
    let inner = filled(200).await;
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 5,
            shuffle_listings: true,
            duplicate_pct: 10.0,
            ..FaultConfig::default()
        },
    );
    let want: Vec<Path> = inner
        .list(None)
        .map(|m| m.unwrap().location)
        .collect()
        .await;
    let want_set: BTreeSet<Path> = want.iter().cloned().collect();
    let mut extra = 0u64;
    let mut reordered = false;
    for round in 0..10 {
        let got: Vec<_> = if round % 2 == 0 {
            s.list(Some(&Path::from("db"))).try_collect().await.unwrap()
        } else {
            s.list_with_delimiter(Some(&Path::from("db/ltx/0")))
                .await
                .unwrap()
                .objects
        };
        for m in &got {
            // Entries stay valid: the same metadata as the inner store's.
            assert_eq!(m, &inner.head(&m.location).await.unwrap());
        }
        let locs: Vec<Path> = got.iter().map(|m| m.location.clone()).collect();
        assert_eq!(locs.iter().cloned().collect::<BTreeSet<_>>(), want_set);
        extra += (locs.len() - want.len()) as u64;
        let mut dedup = locs.clone();
        dedup.dedup();
        reordered |= dedup != want;
    }
    let st = s.stats();
    assert_eq!(st.duplicated, extra);
    assert_eq!(st.requests, 10);
    near(extra, 10 * 200, 10.0, "duplicates");
    assert!(reordered, "shuffled");
    // list_with_offset too.
    let off: Vec<_> = s
        .list_with_offset(None, &key(99))
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    let set: BTreeSet<Path> = off.into_iter().map(|m| m.location).collect();
    assert_eq!(set, want_set.into_iter().filter(|p| p > &key(99)).collect());
}

#[tokio::test]
async fn failing_listings_yield_one_error() {
    let s = FaultStore::new(
        filled(5).await,
        FaultConfig {
            seed: 11,
            fail_pct: 100.0,
            ..FaultConfig::default()
        },
    );
    let items: Vec<_> = s.list(None).collect().await;
    assert_eq!(items.len(), 1);
    assert!(items[0].as_ref().is_err_and(|e| injected(e).is_some()));
    assert!(s.list_with_delimiter(None).await.is_err());
    assert_eq!(s.stats().transient, 2);
}

#[tokio::test]
async fn fail_after_write_really_wrote() {
    let inner = Arc::new(InMemory::new());
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 77,
            fail_after_write_pct: 30.0,
            ..FaultConfig::default()
        },
    );
    let mut failed = 0u64;
    for i in 0..N {
        let r = s.put(&key(i), body(i).into()).await;
        // Whatever the answer, the object is there.
        let got = inner.get(&key(i)).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, body(i));
        if let Err(e) = r {
            assert_eq!(injected(&e).unwrap().kind, FaultKind::AfterWrite);
            assert!(matches!(e, Error::Generic { .. }));
            failed += 1;
        }
    }
    let st = s.stats();
    assert_eq!(st.fail_after_write, failed);
    assert_eq!((st.transient, st.permanent), (0, 0));
    near(failed, N, 30.0, "fail after write");

    // The ambiguous case: a Create that "failed" after writing, retried,
    // meets its own object.
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 1,
            fail_after_write_pct: 100.0,
            ..FaultConfig::default()
        },
    );
    let p = Path::from("lease");
    let create = || PutOptions::from(PutMode::Create);
    let e = s.put_opts(&p, "a".into(), create()).await.unwrap_err();
    assert_eq!(injected(&e).unwrap().kind, FaultKind::AfterWrite);
    let e = s.put_opts(&p, "a".into(), create()).await.unwrap_err();
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e}");
    assert!(injected(&e).is_none());
    assert_eq!(
        s.stats().fail_after_write,
        1,
        "a write that failed is not counted"
    );

    // Multipart: complete wrote.
    let mut up = s.put_multipart(&Path::from("mp")).await.unwrap();
    up.put_part(PutPayload::from(vec![1u8; 10])).await.unwrap();
    up.put_part(PutPayload::from(vec![2u8; 5])).await.unwrap();
    let e = up.complete().await.unwrap_err();
    assert_eq!(injected(&e).unwrap().kind, FaultKind::AfterWrite);
    let got = inner
        .get(&Path::from("mp"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.len(), 15);
}

#[tokio::test]
async fn conditional_writes_pass_through() {
    let inner = Arc::new(InMemory::new());
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 2,
            fail_pct: 30.0,
            permanent_pct: 30.0,
            max_delay_ms: 2,
            ..FaultConfig::default()
        },
    );
    let p = Path::from("db/lease.json");
    inner.put(&p, "held".into()).await.unwrap();
    let mut already = 0;
    for _ in 0..100 {
        match s
            .put_opts(&p, "mine".into(), PutOptions::from(PutMode::Create))
            .await
        {
            Err(Error::AlreadyExists { .. }) => already += 1,
            Err(e) => assert!(injected(&e).is_some(), "{e}"),
            Ok(_) => panic!("Create over an existing key succeeded"),
        }
    }
    assert!(already > 50);
    // Update with a stale version: Precondition, unchanged.
    let cur = inner.head(&p).await.unwrap();
    let stale = object_store::UpdateVersion {
        e_tag: Some("not-the-etag".into()),
        version: None,
    };
    let mut pre = 0;
    for _ in 0..50 {
        match s
            .put_opts(
                &p,
                "mine".into(),
                PutOptions::from(PutMode::Update(stale.clone())),
            )
            .await
        {
            Err(Error::Precondition { .. }) => pre += 1,
            Err(e) => assert!(injected(&e).is_some(), "{e}"),
            Ok(_) => panic!("Update with a stale etag succeeded"),
        }
    }
    assert!(pre > 20);
    assert_eq!(inner.head(&p).await.unwrap(), cur, "never overwritten");
    assert_eq!(
        inner.get(&p).await.unwrap().bytes().await.unwrap(),
        "held".as_bytes()
    );
}

#[tokio::test]
async fn every_operation_is_a_request() {
    let inner = filled(3).await;
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 4,
            fail_pct: 100.0,
            permanent_pct: 100.0,
            ..FaultConfig::default()
        },
    );
    let a = key(0);
    let b = Path::from("copy");
    assert!(matches!(
        s.copy(&a, &b).await,
        Err(Error::PermissionDenied { .. })
    ));
    assert!(s.rename(&a, &b).await.is_err());
    assert!(s.delete(&a).await.is_err());
    assert!(s.put_multipart(&b).await.is_err());
    assert!(s.head(&a).await.is_err());
    // Nothing reached the inner store.
    assert!(inner.head(&a).await.is_ok());
    assert!(inner.head(&b).await.is_err());
    // delete_stream: each path is a request; failed ones are not deleted.
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 8,
            fail_pct: 50.0,
            ..FaultConfig::default()
        },
    );
    let paths = futures::stream::iter((0..3).map(|i| Ok(key(i)))).boxed();
    let res: Vec<_> = s.delete_stream(paths).collect().await;
    assert_eq!(res.len(), 3);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(r.is_ok(), inner.head(&key(i as u64)).await.is_err());
    }
    let st = s.stats();
    assert_eq!(st.requests, 3);
    assert_eq!(
        st.transient,
        res.iter().filter(|r| r.is_err()).count() as u64
    );
    // Multipart parts fail at the configured rate, and are counted.
    let s = FaultStore::new(
        inner.clone(),
        FaultConfig {
            seed: 6,
            fail_pct: 25.0,
            ..FaultConfig::default()
        },
    );
    s.set_enabled(false);
    let mut up = s.put_multipart(&Path::from("mp2")).await.unwrap();
    s.set_enabled(true);
    let mut failed = 0;
    for _ in 0..400 {
        if up.put_part(PutPayload::from(vec![0u8; 4])).await.is_err() {
            failed += 1;
        }
    }
    up.abort().await.unwrap();
    assert_eq!(s.stats().requests, 400);
    assert_eq!(s.stats().transient, failed);
    near(failed, 400, 25.0, "put_part failures");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delays_are_bounded() {
    let s = Arc::new(FaultStore::new(
        filled(1).await,
        FaultConfig {
            seed: 10,
            max_delay_ms: 20,
            ..FaultConfig::default()
        },
    ));
    let t = std::time::Instant::now();
    for _ in 0..20 {
        s.get(&key(0)).await.unwrap().bytes().await.unwrap();
    }
    let ms = t.elapsed().as_millis();
    // 20 sequential requests of 0..=20 ms each: about 200 ms.
    assert!(ms >= 40, "{ms} ms: delays happen");
    assert!(ms < 2000, "{ms} ms");
    assert!(format!("{s}").starts_with("FaultStore("));
    assert!(format!("{s:?}").contains("max_delay_ms: 20"));
}
