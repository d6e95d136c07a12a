//! The driver against the real nft in namespaces this test creates: render → load → read back →
//! equal; incremental plans applied leave exactly the desired table; a refused transaction leaves the
//! previous table in force. Needs root, iproute2 and nftables.

mod support;

use std::time::Instant;

use calico_nft::{
    Chain, DataType, Family, Field, Key, Match, NftError, Op, Rule, Set, SetFlags, Statement,
    Table, Transaction, Value, Verdict, plan,
};
use support::{NftNs, ip, name, sample_table};

#[test]
fn a_missing_table_reads_as_none() {
    let ns = NftNs::new("nft-none");
    assert_eq!(ns.read(Family::Ip, &name("calico")), None);
    assert_eq!(ns.read(Family::Inet, &name("calico")), None);
}

#[test]
fn every_kind_of_object_round_trips_through_the_kernel() {
    let ns = NftNs::new("nft-rt");
    let desired = sample_table("calico", 0);
    let first = plan(&desired, None);
    ns.run(|nft| nft.apply(&first)).expect("load the table");
    let observed = ns
        .read(Family::Ip, desired.name())
        .expect("the table exists");
    assert_eq!(observed, desired, "read back differs from what was loaded");
    assert!(plan(&desired, Some(&observed)).is_empty());

    // Change elements, entries and one chain's rules: only those change, and the result reads back equal.
    let changed = sample_table("calico", 1);
    let tx = plan(&changed, Some(&observed));
    assert!(
        tx.ops.iter().all(|op| !matches!(op, Op::LoadTable(_))),
        "{tx:?}"
    );
    let rewritten: Vec<&str> = tx
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::ReplaceRules { chain, .. } => Some(chain.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(rewritten, ["from-wl"]);
    ns.run(|nft| nft.apply(&tx))
        .unwrap_or_else(|e| panic!("{e}\n{}", tx.render()));
    let observed = ns.read(Family::Ip, changed.name()).expect("table");
    assert_eq!(observed, changed);
    assert!(plan(&changed, Some(&observed)).is_empty());

    // And back again.
    let back = plan(&desired, Some(&observed));
    ns.run(|nft| nft.apply(&back)).expect("change back");
    assert_eq!(ns.read(Family::Ip, desired.name()), Some(desired));
}

#[test]
fn objects_are_added_and_removed_incrementally() {
    let ns = NftNs::new("nft-objs");
    let base = sample_table("calico", 0);
    ns.run(|nft| nft.apply(&plan(&base, None))).expect("load");
    let extra_set = Set::new(name("extra"), vec![DataType::Ipv4Addr], SetFlags::default())
        .expect("set")
        .with_elements([Key::one(Value::addr(ip("198.18.9.9")))])
        .expect("elements");
    let uses_it = Rule::new(
        vec![Match::in_named(Field::IpSaddr, false, &name("extra")).expect("match")],
        vec![Statement::Verdict(Verdict::Jump(name("from-wl")))],
        None,
    )
    .expect("rule");
    let bigger = base
        .clone()
        .with_set(extra_set)
        .and_then(|t| t.with_chain(Chain::regular(name("new-chain"), vec![uses_it])))
        .expect("table");
    let observed = ns.read(Family::Ip, base.name());
    let tx = plan(&bigger, observed.as_ref());
    ns.run(|nft| nft.apply(&tx))
        .unwrap_or_else(|e| panic!("{e}\n{}", tx.render()));
    let observed = ns.read(Family::Ip, base.name());
    assert_eq!(observed.as_ref(), Some(&bigger));

    // Removing the chain and the set it uses, in one transaction.
    let tx = plan(&base, observed.as_ref());
    ns.run(|nft| nft.apply(&tx))
        .unwrap_or_else(|e| panic!("{e}\n{}", tx.render()));
    assert_eq!(ns.read(Family::Ip, base.name()), Some(base));
}

#[test]
fn a_refused_transaction_leaves_the_previous_table_exactly_in_force() {
    let ns = NftNs::new("nft-refuse");
    let before = sample_table("calico", 0);
    ns.run(|nft| nft.apply(&plan(&before, None))).expect("load");
    // Valid ops first (they would change the table), then one the kernel refuses: a jump to a
    // chain that does not exist.
    let mut tx = plan(&sample_table("calico", 1), Some(&before));
    assert!(!tx.is_empty());
    tx.ops.push(Op::ReplaceRules {
        chain: name("to-wl-1"),
        rules: vec![
            Rule::new(
                vec![],
                vec![Statement::Verdict(Verdict::Jump(name("no-such-chain")))],
                None,
            )
            .expect("rule"),
        ],
    });
    let error = ns.run(|nft| nft.apply(&tx)).expect_err("nft refuses");
    let NftError::Failed { line, stderr, .. } = &error else {
        panic!("unexpected error: {error}");
    };
    let (_, text) = line
        .as_ref()
        .unwrap_or_else(|| panic!("no line in {stderr}"));
    assert!(text.contains("no-such-chain"), "{error}");
    assert!(error.to_string().contains("no-such-chain"), "{error}");
    assert_eq!(ns.read(Family::Ip, before.name()), Some(before));
}

#[test]
fn a_whole_table_load_replaces_what_was_there_and_delete_is_idempotent() {
    let ns = NftNs::new("nft-load");
    ns.apply_text("table ip calico { chain stray { counter; }; }\n")
        .expect("a stray chain");
    let desired = sample_table("calico", 0);
    ns.run(|nft| nft.apply(&Transaction::load(&desired)))
        .expect("load");
    assert_eq!(ns.read(Family::Ip, desired.name()), Some(desired.clone()));
    let delete = Transaction {
        family: Family::Ip,
        table: desired.name().clone(),
        ops: vec![Op::DeleteTable],
    };
    ns.run(|nft| nft.apply(&delete)).expect("delete");
    assert_eq!(ns.read(Family::Ip, desired.name()), None);
    ns.run(|nft| nft.apply(&delete))
        .expect("deleting a missing table succeeds");
}

#[test]
fn a_table_with_rules_we_do_not_model_is_an_error_not_a_silent_drop() {
    let ns = NftNs::new("nft-foreign");
    ns.apply_text("table ip calico { chain c { meta length 100 accept; }; }\n")
        .expect("a foreign rule");
    let error = ns
        .run(|nft| nft.read_table(Family::Ip, &name("calico")))
        .expect_err("not modelled");
    assert!(matches!(error, NftError::Parse { .. }), "{error}");
    assert!(error.to_string().contains("length"), "{error}");
}

/// Wall time of a 10,000-rule load and of a one-element change (printed once, not asserted).
#[test]
fn timings_of_a_large_load_and_a_one_element_change_are_printed() {
    let ns = NftNs::new("nft-time");
    let rules: Vec<Rule> = (0..10_000u32)
        .map(|i| {
            let [_, _, a, b] = i.to_be_bytes();
            Rule::new(
                vec![
                    Match::eq(
                        Field::IpSaddr,
                        Value::addr(std::net::IpAddr::from([198, 18, a, b])),
                    )
                    .expect("match"),
                ],
                vec![Statement::Counter, Statement::Verdict(Verdict::Accept)],
                None,
            )
            .expect("rule")
        })
        .collect();
    let set = |extra: bool| {
        let mut elements = vec![Key::one(Value::addr(ip("198.19.0.1")))];
        if extra {
            elements.push(Key::one(Value::addr(ip("198.19.0.2"))));
        }
        Set::new(name("s"), vec![DataType::Ipv4Addr], SetFlags::default())
            .and_then(|s| s.with_elements(elements))
            .expect("set")
    };
    let table = |extra| {
        Table::new(Family::Ip, name("calico"))
            .with_set(set(extra))
            .and_then(|t| t.with_chain(Chain::regular(name("big"), rules.clone())))
            .expect("table")
    };
    let big = table(false);
    let started = Instant::now();
    ns.run(|nft| nft.apply(&plan(&big, None))).expect("load");
    let load = started.elapsed();
    let started = Instant::now();
    let observed = ns.read(Family::Ip, big.name());
    let read = started.elapsed();
    assert_eq!(observed.as_ref(), Some(&big));
    let one_more = table(true);
    let tx = plan(&one_more, observed.as_ref());
    assert_eq!(tx.ops.len(), 1, "{tx:?}");
    let started = Instant::now();
    ns.run(|nft| nft.apply(&tx)).expect("add one element");
    let change = started.elapsed();
    println!(
        "10,000-rule table: load {load:?}, read back and parse {read:?}; one-element change {change:?}"
    );
}

#[test]
fn broken_references_are_found_before_nft_runs_and_nft_agrees() {
    let ns = NftNs::new("nft-refs");
    let good = sample_table("calico", 0);
    assert_eq!(good.check_references(), Ok(()));
    let broken = [
        Rule::new(
            vec![Match::in_named(Field::IpSaddr, false, &name("no-such-set")).expect("match")],
            vec![Statement::Verdict(Verdict::Accept)],
            None,
        ),
        Rule::new(
            vec![Match::in_named(Field::Mark, false, &name("pools")).expect("match")],
            vec![Statement::Verdict(Verdict::Accept)],
            None,
        ),
        Rule::new(
            vec![],
            vec![Statement::Verdict(Verdict::Goto(name("nowhere")))],
            None,
        ),
        Rule::new(
            vec![],
            vec![Statement::Vmap {
                key: Field::Iifname,
                map: name("mark-by-net"),
            }],
            None,
        ),
    ];
    for rule in broken {
        let rule = rule.expect("rule");
        let table = good
            .clone()
            .with_chain(Chain::regular(name("broken"), vec![rule.clone()]))
            .expect("table");
        let error = table.check_references().expect_err("a broken reference");
        assert!(error.to_string().contains("chain broken rule 1"), "{error}");
        let refused = ns.run(|nft| nft.check_script(&Transaction::load(&table).render()));
        assert!(refused.is_err(), "nft accepted {}", rule.render());
    }
}

#[test]
fn every_reserved_word_is_one_nft_refuses_as_a_name_and_our_names_are_not() {
    let ns = NftNs::new("nft-words");
    let declare = |word: &str| format!("add table ip words\nadd chain ip words {word}\n");
    for word in calico_nft::value::RESERVED_WORDS {
        assert!(
            ns.run(|nft| nft.check_script(&declare(word))).is_err(),
            "nft accepts {word} as a name: it need not be reserved"
        );
    }
    for ours in [
        "calico",
        "nat-POSTROUTING",
        "masq-ipam-pools",
        "cali-fw-cali1234",
        "filter",
        "input",
    ] {
        ns.run(|nft| nft.check_script(&declare(ours)))
            .unwrap_or_else(|e| panic!("{ours}: {e}"));
    }
}
