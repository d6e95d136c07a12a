//! Rules: typed matches, then statements, with an optional comment.

use std::collections::BTreeSet;

use crate::value::{Comment, DataType, InvalidError, Key, L4Proto, LogPrefix, Name, Value};

/// Which end of a transport header a port match looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortEnd {
    Sport,
    Dport,
}

/// A packet field a rule can match on (or key a verdict map by).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Iifname,
    Oifname,
    L4Proto,
    Mark,
    /// `meta mark & <mask>`: some bits of the mark (Calico's accept and pass bits), compared with a
    /// value under that mask.
    MarkBits(u32),
    IpSaddr,
    IpDaddr,
    Ip6Saddr,
    Ip6Daddr,
    /// A TCP, UDP or SCTP port (the protocol match is implied, as in nft).
    Port(PortProto, PortEnd),
    IcmpType,
    CtState,
}

/// The protocols whose ports a rule can match.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PortProto {
    Tcp,
    Udp,
    Sctp,
}

impl PortProto {
    pub(crate) fn nft_name(self) -> &'static str {
        match self {
            PortProto::Tcp => "tcp",
            PortProto::Udp => "udp",
            PortProto::Sctp => "sctp",
        }
    }

    fn l4(self) -> L4Proto {
        match self {
            PortProto::Tcp => L4Proto::Tcp,
            PortProto::Udp => L4Proto::Udp,
            PortProto::Sctp => L4Proto::Sctp,
        }
    }
}

impl Field {
    pub fn data_type(self) -> DataType {
        match self {
            Field::Iifname | Field::Oifname => DataType::Ifname,
            Field::L4Proto => DataType::InetProto,
            Field::Mark | Field::MarkBits(_) => DataType::Mark,
            Field::IpSaddr | Field::IpDaddr => DataType::Ipv4Addr,
            Field::Ip6Saddr | Field::Ip6Daddr => DataType::Ipv6Addr,
            Field::Port(..) => DataType::InetService,
            Field::IcmpType => DataType::IcmpType,
            Field::CtState => DataType::CtState,
        }
    }

    /// The protocol this field implies (nft adds the check itself and leaves it out when listing).
    fn implied_proto(self) -> Option<L4Proto> {
        match self {
            Field::Port(proto, _) => Some(proto.l4()),
            Field::IcmpType => Some(L4Proto::Icmp),
            _ => None,
        }
    }

    pub(crate) fn render(self, out: &mut String) {
        match self {
            Field::Iifname => out.push_str("iifname"),
            Field::Oifname => out.push_str("oifname"),
            Field::L4Proto => out.push_str("meta l4proto"),
            Field::Mark => out.push_str("meta mark"),
            Field::MarkBits(mask) => out.push_str(&format!("meta mark & {mask:#010x}")),
            Field::IpSaddr => out.push_str("ip saddr"),
            Field::IpDaddr => out.push_str("ip daddr"),
            Field::Ip6Saddr => out.push_str("ip6 saddr"),
            Field::Ip6Daddr => out.push_str("ip6 daddr"),
            Field::Port(proto, end) => {
                out.push_str(proto.nft_name());
                out.push_str(match end {
                    PortEnd::Sport => " sport",
                    PortEnd::Dport => " dport",
                });
            }
            Field::IcmpType => out.push_str("icmp type"),
            Field::CtState => out.push_str("ct state"),
        }
    }
}

/// What a match compares the field with.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Operand {
    Value(Value),
    /// An anonymous set `{ a, b }` (two or more elements; one is a plain value, as nft lists it).
    Set(BTreeSet<Key>),
    /// A named set of the table, `@name`.
    Named(Name),
}

/// `<field(s)> [!=] <operand>`. Several fields are concatenated (`ip daddr . tcp dport @set`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Match {
    fields: Vec<Field>,
    negated: bool,
    operand: Operand,
}

impl Match {
    /// `field == value` (for ct state: any of the states).
    pub fn eq(field: Field, value: Value) -> Result<Match, InvalidError> {
        Match::new(vec![field], false, Operand::Value(value))
    }

    /// `field != value`.
    pub fn ne(field: Field, value: Value) -> Result<Match, InvalidError> {
        Match::new(vec![field], true, Operand::Value(value))
    }

    /// `field [!=] { values }`; a single value becomes a plain match.
    pub fn in_set(field: Field, negated: bool, values: Vec<Value>) -> Result<Match, InvalidError> {
        Match::new(
            vec![field],
            negated,
            Operand::Set(values.into_iter().map(Key::one).collect()),
        )
    }

    /// `field [!=] @set`.
    pub fn in_named(field: Field, negated: bool, set: &Name) -> Result<Match, InvalidError> {
        Match::new(vec![field], negated, Operand::Named(set.clone()))
    }

    /// The general form: concatenated `fields` against `operand`.
    pub fn new(fields: Vec<Field>, negated: bool, operand: Operand) -> Result<Match, InvalidError> {
        let types: Vec<DataType> = fields.iter().map(|f| f.data_type()).collect();
        if types.is_empty() {
            return Err(InvalidError::Rule("a match needs a field".into()));
        }
        let operand = match operand {
            Operand::Set(keys) if keys.len() == 1 => match keys.into_iter().next() {
                Some(key) if key.values().len() == 1 => Operand::Value(key.values()[0].clone()),
                Some(key) => Operand::Set(BTreeSet::from([key])),
                None => return Err(InvalidError::Rule("empty anonymous set".into())),
            },
            other => other,
        };
        match &operand {
            Operand::Value(value) => {
                if types.len() != 1 {
                    return Err(InvalidError::Rule(
                        "concatenated fields need a set operand".into(),
                    ));
                }
                if value.data_type() != types[0] {
                    return Err(InvalidError::Rule(format!(
                        "{value:?} does not fit {:?}",
                        fields[0]
                    )));
                }
            }
            Operand::Set(keys) => {
                if keys.is_empty() {
                    return Err(InvalidError::Rule("empty anonymous set".into()));
                }
                if types.contains(&DataType::CtState) {
                    return Err(InvalidError::Rule(
                        "ct state takes its states as one value, not a set".into(),
                    ));
                }
                for key in keys {
                    key.check(&types, true)?;
                }
            }
            Operand::Named(_) => {}
        }
        Ok(Match {
            fields,
            negated,
            operand,
        })
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn negated(&self) -> bool {
        self.negated
    }

    pub fn operand(&self) -> &Operand {
        &self.operand
    }

    /// `meta l4proto P` alone (positive, one protocol).
    fn plain_proto(&self) -> Option<L4Proto> {
        match (&self.fields[..], self.negated, &self.operand) {
            ([Field::L4Proto], false, Operand::Value(Value::Proto(p))) => Some(*p),
            _ => None,
        }
    }

    pub(crate) fn render(&self, out: &mut String) {
        for (i, field) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push_str(" . ");
            }
            field.render(out);
        }
        out.push(' ');
        if self.negated {
            out.push_str("!= ");
        }
        match &self.operand {
            Operand::Value(value) => value.render(out),
            Operand::Set(keys) => {
                out.push_str("{ ");
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    key.render(out);
                }
                out.push_str(" }");
            }
            Operand::Named(name) => {
                out.push('@');
                out.push_str(name.as_str());
            }
        }
    }
}

/// A verdict: ends the rule (and, except for continue-like jumps, the packet's walk through the chain).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    Return,
    Jump(Name),
    Goto(Name),
}

impl Verdict {
    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Verdict::Accept => out.push_str("accept"),
            Verdict::Drop => out.push_str("drop"),
            Verdict::Return => out.push_str("return"),
            Verdict::Jump(chain) => {
                out.push_str("jump ");
                out.push_str(chain.as_str());
            }
            Verdict::Goto(chain) => {
                out.push_str("goto ");
                out.push_str(chain.as_str());
            }
        }
    }
}

/// A statement: what a rule does once its matches hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Statement {
    Counter,
    Log {
        prefix: Option<LogPrefix>,
        /// An nflog group (to userspace) instead of the kernel log.
        group: Option<u16>,
    },
    /// `meta mark set`.
    SetMark(u32),
    /// `meta mark set meta mark | <bits>`: sets these bits, keeping the others (other programs' marks).
    SetMarkBits(u32),
    /// `meta mark set meta mark & ~<bits>`: clears these bits, keeping the others.
    ClearMarkBits(u32),
    /// `meta nftrace set 1`: trace the packet (`nft monitor trace`).
    Nftrace,
    Verdict(Verdict),
    /// `<field> vmap @map`: the verdict the named verdict map holds for the field's value.
    Vmap {
        key: Field,
        map: Name,
    },
    Masquerade,
    Snat {
        addr: std::net::IpAddr,
        port: Option<u16>,
    },
    Dnat {
        addr: std::net::IpAddr,
        port: Option<u16>,
    },
}

impl Statement {
    /// Ends rule evaluation: nothing may follow it in the rule.
    fn is_terminal(&self) -> bool {
        matches!(
            self,
            Statement::Verdict(_)
                | Statement::Vmap { .. }
                | Statement::Masquerade
                | Statement::Snat { .. }
                | Statement::Dnat { .. }
        )
    }

    pub(crate) fn render(&self, out: &mut String) {
        match self {
            Statement::Counter => out.push_str("counter"),
            Statement::Log { prefix, group } => {
                out.push_str("log");
                if let Some(prefix) = prefix {
                    out.push_str(" prefix \"");
                    out.push_str(prefix.as_str());
                    out.push('"');
                }
                if let Some(group) = group {
                    out.push_str(&format!(" group {group}"));
                }
            }
            Statement::SetMark(mark) => out.push_str(&format!("meta mark set {mark:#010x}")),
            Statement::SetMarkBits(bits) => {
                out.push_str(&format!("meta mark set meta mark | {bits:#010x}"))
            }
            Statement::ClearMarkBits(bits) => {
                out.push_str(&format!("meta mark set meta mark & {:#010x}", !bits))
            }
            Statement::Nftrace => out.push_str("meta nftrace set 1"),
            Statement::Verdict(verdict) => verdict.render(out),
            Statement::Vmap { key, map } => {
                key.render(out);
                out.push_str(" vmap @");
                out.push_str(map.as_str());
            }
            Statement::Masquerade => out.push_str("masquerade"),
            Statement::Snat { addr, port } | Statement::Dnat { addr, port } => {
                out.push_str(if matches!(self, Statement::Snat { .. }) {
                    "snat to "
                } else {
                    "dnat to "
                });
                match (addr, port) {
                    (std::net::IpAddr::V6(v6), Some(port)) => {
                        out.push_str(&format!("[{v6}]:{port}"))
                    }
                    (addr, Some(port)) => out.push_str(&format!("{addr}:{port}")),
                    (addr, None) => out.push_str(&addr.to_string()),
                }
            }
        }
    }
}

/// A rule: matches (all must hold), then statements, then an optional comment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Rule {
    matches: Vec<Match>,
    statements: Vec<Statement>,
    comment: Option<Comment>,
}

impl Rule {
    /// Checks that at least one statement is given and that a terminal one (verdict, vmap, NAT) is
    /// last. A `meta l4proto P` match that a later port or ICMP match implies is dropped, as nft
    /// lists the rule without it.
    pub fn new(
        matches: Vec<Match>,
        statements: Vec<Statement>,
        comment: Option<Comment>,
    ) -> Result<Rule, InvalidError> {
        if statements.is_empty() {
            return Err(InvalidError::Rule("a rule needs a statement".into()));
        }
        if let Some(i) = statements.iter().position(Statement::is_terminal)
            && i + 1 != statements.len()
        {
            return Err(InvalidError::Rule(format!(
                "{:?} ends the rule; nothing may follow it",
                statements[i]
            )));
        }
        let mut implied: Vec<L4Proto> = matches
            .iter()
            .flat_map(|m| m.fields.iter().filter_map(|f| f.implied_proto()))
            .collect();
        implied.dedup();
        // nft refuses a rule whose matches imply different protocols ("conflicting protocols").
        let stated = matches.iter().filter_map(Match::plain_proto);
        if let Some(other) = implied
            .iter()
            .chain(stated.collect::<Vec<_>>().iter())
            .find(|p| implied.first().is_some_and(|first| first != *p))
        {
            return Err(InvalidError::Rule(format!(
                "matches on {:?} and {other:?} conflict",
                implied[0]
            )));
        }
        let matches = matches
            .into_iter()
            .filter(|m| !m.plain_proto().is_some_and(|p| implied.contains(&p)))
            .collect();
        Ok(Rule {
            matches,
            statements,
            comment,
        })
    }

    pub fn matches(&self) -> &[Match] {
        &self.matches
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }

    pub fn comment(&self) -> Option<&Comment> {
        self.comment.as_ref()
    }

    /// The rule in nft syntax (what follows `add rule <family> <table> <chain>`).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for m in &self.matches {
            m.render(&mut out);
            out.push(' ');
        }
        for (i, s) in self.statements.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            s.render(&mut out);
        }
        if let Some(comment) = &self.comment {
            out.push_str(" comment \"");
            out.push_str(comment.as_str());
            out.push('"');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    #[test]
    fn renders_matches_statements_and_comment() {
        let rule = Rule::new(
            vec![
                Match::eq(Field::Iifname, Value::ifname_prefix("cali").unwrap()).unwrap(),
                Match::ne(Field::IpDaddr, Value::net("198.18.0.0/15".parse().unwrap())).unwrap(),
                Match::in_set(
                    Field::Port(PortProto::Tcp, PortEnd::Dport),
                    false,
                    vec![Value::port(80), Value::port_range(8000, 8080).unwrap()],
                )
                .unwrap(),
            ],
            vec![
                Statement::Counter,
                Statement::Log {
                    prefix: Some(LogPrefix::new("calico: ").unwrap()),
                    group: Some(3),
                },
                Statement::Verdict(Verdict::Jump(name("policy-a"))),
            ],
            Some(Comment::new("from pods").unwrap()),
        )
        .unwrap();
        assert_eq!(
            rule.render(),
            "iifname \"cali*\" ip daddr != 198.18.0.0/15 tcp dport { 80, 8000-8080 } counter \
             log prefix \"calico: \" group 3 jump policy-a comment \"from pods\""
        );
    }

    #[test]
    fn a_protocol_match_implied_by_a_port_or_icmp_match_is_dropped() {
        let proto = |p| Match::eq(Field::L4Proto, Value::Proto(p)).unwrap();
        let dport =
            Match::eq(Field::Port(PortProto::Udp, PortEnd::Dport), Value::port(53)).unwrap();
        let rule = Rule::new(
            vec![proto(L4Proto::Udp), dport.clone()],
            vec![Statement::Verdict(Verdict::Accept)],
            None,
        )
        .unwrap();
        assert_eq!(rule.render(), "udp dport 53 accept");
        // Matches implying different protocols conflict (nft refuses them too).
        let tcp_port =
            Match::eq(Field::Port(PortProto::Tcp, PortEnd::Sport), Value::port(1)).unwrap();
        for matches in [
            vec![proto(L4Proto::Tcp), dport.clone()],
            vec![dport, tcp_port],
        ] {
            assert!(Rule::new(matches, vec![Statement::Verdict(Verdict::Accept)], None).is_err());
        }
    }

    #[test]
    fn terminal_statements_must_come_last() {
        let err = Rule::new(
            vec![],
            vec![Statement::Verdict(Verdict::Accept), Statement::Counter],
            None,
        );
        assert!(err.is_err());
        assert!(Rule::new(vec![], vec![], None).is_err());
        assert!(
            Rule::new(
                vec![],
                vec![Statement::Counter, Statement::Masquerade],
                None
            )
            .is_ok()
        );
    }

    #[test]
    fn operands_must_fit_their_fields() {
        assert!(Match::eq(Field::IpSaddr, Value::port(1)).is_err());
        assert!(Match::eq(Field::Ip6Saddr, Value::addr("198.18.0.1".parse().unwrap())).is_err());
        assert!(Match::in_set(Field::IpSaddr, false, vec![]).is_err());
        assert!(
            Match::in_set(
                Field::CtState,
                false,
                vec![
                    Value::ct_states(&[crate::value::CtState::New]).unwrap(),
                    Value::ct_states(&[crate::value::CtState::Invalid]).unwrap()
                ]
            )
            .is_err()
        );
        // A one-element anonymous set is a plain value, as nft lists it.
        let one = Match::in_set(Field::Mark, true, vec![Value::Mark(1)]).unwrap();
        assert_eq!(one, Match::ne(Field::Mark, Value::Mark(1)).unwrap());
    }

    #[test]
    fn nat_and_marks_render() {
        let render = |s: Statement| Rule::new(vec![], vec![s], None).unwrap().render();
        assert_eq!(render(Statement::SetMark(0x20)), "meta mark set 0x00000020");
        assert_eq!(
            render(Statement::SetMarkBits(0x10000)),
            "meta mark set meta mark | 0x00010000"
        );
        assert_eq!(
            render(Statement::ClearMarkBits(0x30000)),
            "meta mark set meta mark & 0xfffcffff"
        );
        let mut text = String::new();
        Match::eq(Field::MarkBits(0x20000), Value::Mark(0))
            .unwrap()
            .render(&mut text);
        assert_eq!(text, "meta mark & 0x00020000 0x00000000");
        assert_eq!(render(Statement::Nftrace), "meta nftrace set 1");
        assert_eq!(
            render(Statement::Dnat {
                addr: "198.18.0.4".parse().unwrap(),
                port: Some(8080)
            }),
            "dnat to 198.18.0.4:8080"
        );
        assert_eq!(
            render(Statement::Snat {
                addr: "198.18.0.2".parse().unwrap(),
                port: None
            }),
            "snat to 198.18.0.2"
        );
        assert_eq!(
            render(Statement::Vmap {
                key: Field::Oifname,
                map: name("to-wl")
            }),
            "oifname vmap @to-wl"
        );
        assert_eq!(
            render(Statement::Log {
                prefix: None,
                group: None
            }),
            "log"
        );
    }
}
