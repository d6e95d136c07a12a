//! Rendered tables and transactions as files under `tests/golden/`, each also fed to the real
//! `nft --check -f` (in a namespace this test creates, after loading the table it applies to), so a
//! golden file nft would refuse fails the test. `UPDATE_GOLDEN=1` rewrites the files.
//! Needs root, iproute2 and nftables.

mod support;

use std::path::{Path, PathBuf};

use calico_nft::{
    BaseChain, Chain, ChainType, DataType, Family, Field, Hook, Key, Map, MapData, MapValue, Match,
    Op, Policy, Priority, Rule, Set, SetFlags, Statement, Table, Transaction, Value, Verdict, plan,
};
use support::{NftNs, ifname, ip, name, net, sample_table};

struct Case {
    file: &'static str,
    /// The table loaded before `nft --check` sees the transaction (incremental ones need it).
    base: Option<Table>,
    transaction: Transaction,
}

fn inet_table() -> Table {
    let v6 = Set::new(
        name("pools6"),
        vec![DataType::Ipv6Addr],
        SetFlags {
            interval: true,
            ..SetFlags::default()
        },
    )
    .and_then(|s| {
        s.with_elements([
            Key::one(net("fd00:198:18::/48")),
            Key::one(Value::addr(ip("fd00::1"))),
        ])
    })
    .expect("set");
    let input = BaseChain {
        chain_type: ChainType::Filter,
        hook: Hook::Input,
        priority: Priority::Number(-10),
        policy: Policy::Drop,
    };
    let rules = vec![
        Rule::new(
            vec![Match::in_named(Field::Ip6Saddr, false, &name("pools6")).expect("match")],
            vec![Statement::Counter, Statement::Verdict(Verdict::Accept)],
            None,
        ),
        Rule::new(
            vec![Match::eq(Field::Ip6Daddr, Value::addr(ip("fd00::2"))).expect("match")],
            vec![Statement::Verdict(Verdict::Drop)],
            Some(calico_nft::Comment::new("one v6 host").expect("comment")),
        ),
        Rule::new(
            vec![Match::eq(Field::IpSaddr, net("198.18.0.0/15")).expect("match")],
            vec![Statement::Verdict(Verdict::Accept)],
            None,
        ),
    ]
    .into_iter()
    .collect::<Result<Vec<_>, _>>()
    .expect("rules");
    Table::new(Family::Inet, name("calico"))
        .with_set(v6)
        .and_then(|t| t.with_chain(Chain::base(name("filter-INPUT"), input, rules)))
        .expect("table")
}

fn cases() -> Vec<Case> {
    let sample = sample_table("calico", 0);
    let changed = sample_table("calico", 1);
    let added = sample
        .clone()
        .with_map(
            Map::new(
                name("from-wl"),
                vec![DataType::Ifname],
                MapData::Verdict,
                false,
            )
            .and_then(|m| {
                m.with_entries([(
                    Key::one(ifname("cali9")),
                    MapValue::Verdict(Verdict::Jump(name("extra"))),
                )])
            })
            .expect("map"),
        )
        .and_then(|t| {
            t.with_chain(Chain::regular(
                name("extra"),
                vec![
                    Rule::new(
                        vec![],
                        vec![Statement::Vmap {
                            key: Field::Iifname,
                            map: name("from-wl"),
                        }],
                        None,
                    )
                    .expect("rule"),
                ],
            ))
        })
        .expect("table");
    vec![
        Case {
            file: "sample-load.nft",
            base: None,
            transaction: Transaction::load(&sample),
        },
        Case {
            file: "sample-incremental.nft",
            base: Some(sample.clone()),
            transaction: plan(&changed, Some(&sample)),
        },
        Case {
            file: "objects-added.nft",
            base: Some(sample.clone()),
            transaction: plan(&added, Some(&sample)),
        },
        Case {
            file: "objects-removed.nft",
            base: Some(added.clone()),
            transaction: plan(&sample, Some(&added)),
        },
        Case {
            file: "delete-table.nft",
            base: None,
            transaction: Transaction {
                family: Family::Ip,
                table: name("calico"),
                ops: vec![Op::DeleteTable],
            },
        },
        Case {
            file: "inet-load.nft",
            base: None,
            transaction: Transaction::load(&inet_table()),
        },
    ]
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

#[test]
fn rendered_transactions_match_their_golden_files_and_nft_accepts_them() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = golden_dir();
    let cases = cases();
    let mut mismatches = Vec::new();
    for case in &cases {
        let path = dir.join(case.file);
        let rendered = case.transaction.render();
        if update {
            std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            continue;
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
        if golden != rendered {
            mismatches.push(format!(
                "{}:\n--- golden\n{golden}--- rendered\n{rendered}",
                case.file
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // Every file in the directory is a case (no stale golden files nobody checks).
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = cases.iter().map(|c| c.file.to_string()).collect();
    known.sort();
    assert_eq!(on_disk, known);

    // nft itself accepts every golden file, against the table it applies to.
    for case in &cases {
        let ns = NftNs::new("nft-golden");
        if let Some(base) = &case.base {
            ns.run(|nft| nft.apply(&Transaction::load(base)))
                .unwrap_or_else(|e| panic!("load the base of {}: {e}", case.file));
        }
        let text = std::fs::read_to_string(dir.join(case.file)).expect("golden file");
        ns.run(|nft| nft.check_script(&text))
            .unwrap_or_else(|e| panic!("nft --check refuses {}: {e}", case.file));
    }
}

#[test]
fn nft_check_refuses_a_bad_transaction() {
    // The check above can fail: nft --check does refuse what the kernel would.
    let ns = NftNs::new("nft-golden-bad");
    let bad = Transaction {
        family: Family::Ip,
        table: name("calico"),
        ops: vec![Op::ReplaceRules {
            chain: name("missing"),
            rules: vec![],
        }],
    };
    let error = ns
        .run(|nft| nft.check_script(&bad.render()))
        .expect_err("no such chain");
    assert!(
        error.to_string().contains("flush chain ip calico missing"),
        "{error}"
    );
}
