//! Reading our table back from `nft -j list table <family> <name>` into the same typed values.
//!
//! Only what this crate renders is understood; anything else (a rule someone added by hand with an
//! expression we do not model) is an error naming it, so a resync never silently drops it.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::Value as Json;

use crate::rule::{Field, Match, Operand, PortEnd, PortProto, Rule, Statement, Verdict};
use crate::table::{
    BaseChain, Chain, ChainType, Family, Hook, Map, MapData, MapValue, Policy, Priority, Set,
    SetFlags, Table,
};
use crate::value::{
    Comment, CtState, DataType, IcmpType, InvalidError, Key, L4Proto, LogPrefix, Name, Value,
};

#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("nft's JSON output: {0}")]
    Json(#[from] serde_json::Error),
    #[error("nft's JSON output: {what}: {json}")]
    Unexpected { what: String, json: String },
    #[error("nft's JSON output holds a value we refuse: {0}")]
    Invalid(#[from] InvalidError),
}

fn unexpected(what: &str, json: &Json) -> ParseError {
    ParseError::Unexpected {
        what: what.to_string(),
        json: json.to_string(),
    }
}

fn field<'a>(object: &'a Json, key: &str) -> Result<&'a Json, ParseError> {
    object
        .get(key)
        .ok_or_else(|| unexpected(&format!("no \"{key}\""), object))
}

fn string<'a>(object: &'a Json, key: &str) -> Result<&'a str, ParseError> {
    field(object, key)?
        .as_str()
        .ok_or_else(|| unexpected(&format!("\"{key}\" is not a string"), object))
}

/// Parses the output of `nft -j list table F N` (which lists exactly one table).
pub fn parse_table(text: &str) -> Result<Table, ParseError> {
    let json: Json = serde_json::from_str(text)?;
    let items = json
        .get("nftables")
        .and_then(Json::as_array)
        .ok_or_else(|| unexpected("no \"nftables\" array", &json))?;
    let mut table: Option<Table> = None;
    let mut chains: Vec<Chain> = Vec::new();
    let mut sets = Vec::new();
    let mut maps = Vec::new();
    for item in items {
        let Some((kind, body)) = item.as_object().and_then(|o| o.iter().next()) else {
            return Err(unexpected("not an object", item));
        };
        match kind.as_str() {
            "metainfo" => {}
            "table" => {
                let family = Family::from_nft_name(string(body, "family")?)
                    .ok_or_else(|| unexpected("family", body))?;
                table = Some(Table::new(family, Name::new(string(body, "name")?)?));
            }
            "set" => sets.push(parse_set(body)?),
            "map" => maps.push(parse_map(body)?),
            "chain" => chains.push(parse_chain(body)?),
            "rule" => {
                let chain_name = Name::new(string(body, "chain")?)?;
                let chain = chains
                    .iter_mut()
                    .find(|c| c.name == chain_name)
                    .ok_or_else(|| unexpected("rule before its chain", body))?;
                chain.rules.push(parse_rule(body)?);
            }
            _ => return Err(unexpected("an object we do not manage", item)),
        }
    }
    let mut table = table.ok_or_else(|| unexpected("no table", &json))?;
    for set in sets {
        table = table.with_set(set)?;
    }
    for map in maps {
        table = table.with_map(map)?;
    }
    for chain in chains {
        table = table.with_chain(chain)?;
    }
    Ok(table)
}

fn parse_key_type(json: &Json) -> Result<Vec<DataType>, ParseError> {
    let one = |j: &Json| {
        j.as_str()
            .and_then(DataType::from_nft_name)
            .ok_or_else(|| unexpected("data type", j))
    };
    match json {
        Json::Array(parts) => parts.iter().map(one).collect(),
        single => Ok(vec![one(single)?]),
    }
}

fn parse_flags(body: &Json) -> Result<SetFlags, ParseError> {
    let mut flags = SetFlags::default();
    let list = match body.get("flags") {
        None => return Ok(flags),
        Some(Json::Array(list)) => list.clone(),
        Some(single) => vec![single.clone()],
    };
    for flag in &list {
        match flag.as_str() {
            Some("interval") => flags.interval = true,
            Some("constant") => flags.constant = true,
            Some("timeout") => flags.timeout = true,
            _ => return Err(unexpected("set flag", flag)),
        }
    }
    Ok(flags)
}

fn elements(body: &Json) -> &[Json] {
    body.get("elem")
        .and_then(Json::as_array)
        .map_or(&[], Vec::as_slice)
}

fn parse_set(body: &Json) -> Result<Set, ParseError> {
    let key = parse_key_type(field(body, "type")?)?;
    let set = Set::new(
        Name::new(string(body, "name")?)?,
        key.clone(),
        parse_flags(body)?,
    )?;
    let keys = elements(body)
        .iter()
        .map(|e| parse_key(unwrap_elem(e), &key))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(set.with_elements(keys)?)
}

/// Elements with options (timeouts, comments) come wrapped as `{"elem": {"val": ...}}`.
fn unwrap_elem(json: &Json) -> &Json {
    json.get("elem").and_then(|e| e.get("val")).unwrap_or(json)
}

fn parse_map(body: &Json) -> Result<Map, ParseError> {
    let key = parse_key_type(field(body, "type")?)?;
    let data = match string(body, "map")? {
        "verdict" => MapData::Verdict,
        other => MapData::Value(
            DataType::from_nft_name(other).ok_or_else(|| unexpected("map data type", body))?,
        ),
    };
    let flags = parse_flags(body)?;
    let map = Map::new(
        Name::new(string(body, "name")?)?,
        key.clone(),
        data,
        flags.interval,
    )?;
    let entries = elements(body)
        .iter()
        .map(|pair| {
            let [k, v] = pair.as_array().map(Vec::as_slice).unwrap_or_default() else {
                return Err(unexpected("map element", pair));
            };
            let key = parse_key(unwrap_elem(k), &key)?;
            let value = match data {
                MapData::Verdict => {
                    MapValue::Verdict(parse_verdict(v)?.ok_or_else(|| unexpected("verdict", v))?)
                }
                MapData::Value(t) => MapValue::Value(parse_value(v, t)?),
            };
            Ok((key, value))
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(map.with_entries(entries)?)
}

fn parse_key(json: &Json, types: &[DataType]) -> Result<Key, ParseError> {
    if let Some(parts) = json.get("concat").and_then(Json::as_array) {
        if parts.len() != types.len() {
            return Err(unexpected("concatenation of another length", json));
        }
        let values = parts
            .iter()
            .zip(types)
            .map(|(p, t)| parse_value(p, *t))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Key::concat(values)?);
    }
    match types {
        [one] => Ok(Key::one(parse_value(json, *one)?)),
        _ => Err(unexpected("a single value for a concatenated type", json)),
    }
}

fn parse_value(json: &Json, data_type: DataType) -> Result<Value, ParseError> {
    let bad = || unexpected(&format!("a {} value", data_type.nft_name()), json);
    if let Some(prefix) = json.get("prefix") {
        let addr: IpAddr = string(prefix, "addr")?.parse().map_err(|_| bad())?;
        let len = field(prefix, "len")?.as_u64().ok_or_else(bad)?;
        let net = IpNet::new(addr, u8::try_from(len).map_err(|_| bad())?).map_err(|_| bad())?;
        return Ok(Value::net(net));
    }
    if let Some(range) = json.get("range").and_then(Json::as_array) {
        let [low, high] = range.as_slice() else {
            return Err(bad());
        };
        if data_type != DataType::InetService {
            return Err(bad());
        }
        let port = |j: &Json| {
            j.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(bad)
        };
        return Ok(Value::port_range(port(low)?, port(high)?)?);
    }
    let value = match data_type {
        DataType::Ipv4Addr | DataType::Ipv6Addr => {
            let addr: IpAddr = json.as_str().and_then(|s| s.parse().ok()).ok_or_else(bad)?;
            if Value::addr(addr).data_type() != data_type {
                return Err(bad());
            }
            Value::addr(addr)
        }
        DataType::Ifname => {
            let name = json.as_str().ok_or_else(bad)?;
            match name.strip_suffix('*') {
                Some(prefix) if !prefix.ends_with('\\') => Value::ifname_prefix(prefix)?,
                _ => Value::ifname(name)?,
            }
        }
        DataType::InetService => Value::port(
            json.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(bad)?,
        ),
        DataType::InetProto => match json {
            Json::String(name) => Value::Proto(L4Proto::from_nft_name(name).ok_or_else(bad)?),
            number => Value::Proto(L4Proto::from_number(
                number
                    .as_u64()
                    .and_then(|n| u8::try_from(n).ok())
                    .ok_or_else(bad)?,
            )),
        },
        DataType::Mark => Value::Mark(
            json.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(bad)?,
        ),
        DataType::IcmpType => Value::Icmp(
            json.as_str()
                .and_then(IcmpType::from_nft_name)
                .ok_or_else(bad)?,
        ),
        DataType::CtState => {
            // One state, a list of them, or `{"|": [...]}` when negated.
            let list: Vec<&Json> = match json {
                Json::String(_) => vec![json],
                Json::Array(items) => items.iter().collect(),
                other => match other.get("|").and_then(Json::as_array) {
                    Some(items) => items.iter().collect(),
                    None => return Err(bad()),
                },
            };
            let states = list
                .into_iter()
                .map(|j| j.as_str().and_then(CtState::from_nft_name).ok_or_else(bad))
                .collect::<Result<Vec<_>, _>>()?;
            Value::ct_states(&states)?
        }
    };
    Ok(value)
}

fn parse_chain(body: &Json) -> Result<Chain, ParseError> {
    let name = Name::new(string(body, "name")?)?;
    let Some(hook) = body.get("hook") else {
        return Ok(Chain::regular(name, Vec::new()));
    };
    let chain_type = match string(body, "type")? {
        "filter" => ChainType::Filter,
        "nat" => ChainType::Nat,
        "route" => ChainType::Route,
        _ => return Err(unexpected("chain type", body)),
    };
    let hook = match hook.as_str() {
        Some("prerouting") => Hook::Prerouting,
        Some("input") => Hook::Input,
        Some("forward") => Hook::Forward,
        Some("output") => Hook::Output,
        Some("postrouting") => Hook::Postrouting,
        _ => return Err(unexpected("hook", body)),
    };
    let priority = field(body, "prio")?
        .as_i64()
        .and_then(|n| i32::try_from(n).ok())
        .ok_or_else(|| unexpected("priority", body))?;
    let policy = match body.get("policy").and_then(Json::as_str) {
        None | Some("accept") => Policy::Accept,
        Some("drop") => Policy::Drop,
        Some(_) => return Err(unexpected("policy", body)),
    };
    Ok(Chain::base(
        name,
        BaseChain {
            chain_type,
            hook,
            priority: Priority::Number(priority),
            policy,
        },
        Vec::new(),
    ))
}

fn parse_rule(body: &Json) -> Result<Rule, ParseError> {
    let comment = body
        .get("comment")
        .and_then(Json::as_str)
        .map(Comment::new)
        .transpose()?;
    let exprs = field(body, "expr")?
        .as_array()
        .ok_or_else(|| unexpected("expr is not a list", body))?;
    let mut matches = Vec::new();
    let mut statements = Vec::new();
    for expr in exprs {
        if let Some(m) = expr.get("match") {
            if !statements.is_empty() {
                return Err(unexpected("a match after a statement", body));
            }
            matches.push(parse_match(m)?);
        } else {
            statements.push(parse_statement(expr)?);
        }
    }
    Ok(Rule::new(matches, statements, comment)?)
}

/// `{"<op>": [{"meta": {"key": "mark"}}, N]}`: the mark combined with a number by `op`.
fn mark_with(json: &Json, op: &str) -> Option<u32> {
    let [left, right] = json.get(op)?.as_array()?.as_slice() else {
        return None;
    };
    let is_mark = left
        .get("meta")
        .and_then(|m| m.get("key"))
        .and_then(Json::as_str)
        == Some("mark");
    if !is_mark {
        return None;
    }
    right.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn parse_field(json: &Json) -> Result<Field, ParseError> {
    let bad = || unexpected("a field we do not model", json);
    if let Some(mask) = mark_with(json, "&") {
        return Ok(Field::MarkBits(mask));
    }
    if let Some(meta) = json.get("meta") {
        return match string(meta, "key")? {
            "iifname" => Ok(Field::Iifname),
            "oifname" => Ok(Field::Oifname),
            "l4proto" => Ok(Field::L4Proto),
            "mark" => Ok(Field::Mark),
            _ => Err(bad()),
        };
    }
    if let Some(ct) = json.get("ct") {
        return match string(ct, "key")? {
            "state" => Ok(Field::CtState),
            _ => Err(bad()),
        };
    }
    if let Some(payload) = json.get("payload") {
        let proto = string(payload, "protocol")?;
        let name = string(payload, "field")?;
        let port = |p| match name {
            "sport" => Ok(Field::Port(p, PortEnd::Sport)),
            "dport" => Ok(Field::Port(p, PortEnd::Dport)),
            _ => Err(bad()),
        };
        return match (proto, name) {
            ("ip", "saddr") => Ok(Field::IpSaddr),
            ("ip", "daddr") => Ok(Field::IpDaddr),
            ("ip6", "saddr") => Ok(Field::Ip6Saddr),
            ("ip6", "daddr") => Ok(Field::Ip6Daddr),
            ("icmp", "type") => Ok(Field::IcmpType),
            ("tcp", _) => port(PortProto::Tcp),
            ("udp", _) => port(PortProto::Udp),
            ("sctp", _) => port(PortProto::Sctp),
            _ => Err(bad()),
        };
    }
    Err(bad())
}

fn parse_match(json: &Json) -> Result<Match, ParseError> {
    let left = field(json, "left")?;
    let fields = match left.get("concat").and_then(Json::as_array) {
        Some(parts) => parts
            .iter()
            .map(parse_field)
            .collect::<Result<Vec<_>, _>>()?,
        None => vec![parse_field(left)?],
    };
    let negated = match string(json, "op")? {
        "==" | "in" => false,
        "!=" => true,
        _ => return Err(unexpected("match operator", json)),
    };
    let right = field(json, "right")?;
    let types: Vec<DataType> = fields.iter().map(|f| f.data_type()).collect();
    let operand = if let Some(name) = right.as_str().and_then(|s| s.strip_prefix('@')) {
        Operand::Named(Name::new(name)?)
    } else if let Some(items) = right.get("set").and_then(Json::as_array) {
        Operand::Set(
            items
                .iter()
                .map(|item| parse_key(item, &types))
                .collect::<Result<BTreeSet<_>, _>>()?,
        )
    } else {
        match types.as_slice() {
            [one] => Operand::Value(parse_value(right, *one)?),
            _ => return Err(unexpected("concatenation against a value", json)),
        }
    };
    Ok(Match::new(fields, negated, operand)?)
}

/// A verdict object (`{"accept": null}`, `{"jump": {"target": "x"}}`), or None for anything else.
fn parse_verdict(json: &Json) -> Result<Option<Verdict>, ParseError> {
    let Some((kind, body)) = json.as_object().and_then(|o| o.iter().next()) else {
        return Ok(None);
    };
    Ok(Some(match kind.as_str() {
        "accept" => Verdict::Accept,
        "drop" => Verdict::Drop,
        "return" => Verdict::Return,
        "jump" => Verdict::Jump(Name::new(string(body, "target")?)?),
        "goto" => Verdict::Goto(Name::new(string(body, "target")?)?),
        _ => return Ok(None),
    }))
}

fn parse_nat_target(body: &Json) -> Result<(IpAddr, Option<u16>), ParseError> {
    let addr = string(body, "addr")?
        .parse()
        .map_err(|_| unexpected("NAT address", body))?;
    let port = match body.get("port") {
        None => None,
        Some(p) => Some(
            p.as_u64()
                .and_then(|n| u16::try_from(n).ok())
                .ok_or_else(|| unexpected("NAT port", body))?,
        ),
    };
    Ok((addr, port))
}

fn parse_statement(json: &Json) -> Result<Statement, ParseError> {
    if let Some(verdict) = parse_verdict(json)? {
        return Ok(Statement::Verdict(verdict));
    }
    let Some((kind, body)) = json.as_object().and_then(|o| o.iter().next()) else {
        return Err(unexpected("statement", json));
    };
    match kind.as_str() {
        "counter" => Ok(Statement::Counter),
        "log" => {
            let prefix = body
                .get("prefix")
                .and_then(Json::as_str)
                .map(LogPrefix::new)
                .transpose()?;
            let group = match body.get("group") {
                None => None,
                Some(g) => Some(
                    g.as_u64()
                        .and_then(|n| u16::try_from(n).ok())
                        .ok_or_else(|| unexpected("log group", body))?,
                ),
            };
            Ok(Statement::Log { prefix, group })
        }
        "mangle" => {
            let key = field(body, "key")?;
            let meta = key.get("meta").map(|m| string(m, "key")).transpose()?;
            let value_json = field(body, "value")?;
            if meta == Some("mark") {
                if let Some(bits) = mark_with(value_json, "|") {
                    return Ok(Statement::SetMarkBits(bits));
                }
                if let Some(keep) = mark_with(value_json, "&") {
                    return Ok(Statement::ClearMarkBits(!keep));
                }
            }
            let value = value_json.as_u64();
            match (meta, value) {
                (Some("mark"), Some(v)) => Ok(Statement::SetMark(
                    u32::try_from(v).map_err(|_| unexpected("mark", body))?,
                )),
                (Some("nftrace"), Some(1)) => Ok(Statement::Nftrace),
                _ => Err(unexpected("a statement we do not model", json)),
            }
        }
        "vmap" => {
            let key = parse_field(field(body, "key")?)?;
            let map = string(body, "data")?
                .strip_prefix('@')
                .ok_or_else(|| unexpected("an anonymous verdict map", json))?;
            Ok(Statement::Vmap {
                key,
                map: Name::new(map)?,
            })
        }
        "masquerade" => Ok(Statement::Masquerade),
        "snat" => {
            let (addr, port) = parse_nat_target(body)?;
            Ok(Statement::Snat { addr, port })
        }
        "dnat" => {
            let (addr, port) = parse_nat_target(body)?;
            Ok(Statement::Dnat { addr, port })
        }
        _ => Err(unexpected("a statement we do not model", json)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{Field, Match, Operand, Statement, Verdict};
    use crate::table::{BaseChain, ChainType, Hook, Policy, PriorityName};

    fn name(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    /// What nft 1.0.6 printed for a small table (`nft -j -p list table ip t`), trimmed to one line each.
    const LISTED: &str = r#"{"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "ip", "name": "t", "handle": 6}},
        {"set": {"family": "ip", "name": "s4", "table": "t", "type": "ipv4_addr", "handle": 5, "flags": ["interval"],
                 "elem": ["198.18.0.1", {"prefix": {"addr": "198.18.0.4", "len": 30}}]}},
        {"set": {"family": "ip", "name": "c", "table": "t", "type": ["ipv4_addr", "inet_service"], "handle": 6,
                 "elem": [{"concat": ["198.18.0.1", 80]}]}},
        {"map": {"family": "ip", "name": "vm", "table": "t", "type": "ifname", "handle": 10, "map": "verdict",
                 "elem": [["cali1", {"jump": {"target": "b"}}], ["cali2", {"drop": null}]]}},
        {"chain": {"family": "ip", "table": "t", "name": "a", "handle": 1, "type": "filter", "hook": "forward", "prio": 5, "policy": "drop"}},
        {"chain": {"family": "ip", "table": "t", "name": "b", "handle": 2}},
        {"rule": {"family": "ip", "table": "t", "chain": "a", "handle": 12, "expr": [{"vmap": {"key": {"meta": {"key": "iifname"}}, "data": "@vm"}}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "a", "handle": 13, "comment": "hello world",
                  "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "cali*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"goto": {"target": "b"}}]}},
        {"rule": {"family": "ip", "table": "t", "chain": "b", "handle": 37,
                  "expr": [{"match": {"op": "!=", "left": {"ct": {"key": "state"}}, "right": {"|": ["established", "related"]}}},
                           {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": {"set": [6, 47]}}},
                           {"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"payload": {"protocol": "tcp", "field": "dport"}}]}, "right": "@c"}},
                           {"mangle": {"key": {"meta": {"key": "nftrace"}}, "value": 1}}, {"accept": null}]}}
    ]}"#;

    #[test]
    fn a_listing_parses_into_the_typed_table() {
        let parsed = parse_table(LISTED).unwrap();
        let s4 = Set::new(
            name("s4"),
            vec![DataType::Ipv4Addr],
            SetFlags {
                interval: true,
                ..SetFlags::default()
            },
        )
        .unwrap()
        .with_elements([
            Key::one(Value::addr("198.18.0.1".parse().unwrap())),
            Key::one(Value::net("198.18.0.4/30".parse().unwrap())),
        ])
        .unwrap();
        let c = Set::new(
            name("c"),
            vec![DataType::Ipv4Addr, DataType::InetService],
            SetFlags::default(),
        )
        .unwrap()
        .with_elements([Key::concat(vec![
            Value::addr("198.18.0.1".parse().unwrap()),
            Value::port(80),
        ])
        .unwrap()])
        .unwrap();
        let vm = Map::new(name("vm"), vec![DataType::Ifname], MapData::Verdict, false)
            .unwrap()
            .with_entries([
                (
                    Key::one(Value::ifname("cali1").unwrap()),
                    MapValue::Verdict(Verdict::Jump(name("b"))),
                ),
                (
                    Key::one(Value::ifname("cali2").unwrap()),
                    MapValue::Verdict(Verdict::Drop),
                ),
            ])
            .unwrap();
        let a = Chain::base(
            name("a"),
            BaseChain {
                chain_type: ChainType::Filter,
                hook: Hook::Forward,
                priority: Priority::Named(PriorityName::Filter, 5),
                policy: Policy::Drop,
            },
            vec![
                Rule::new(
                    vec![],
                    vec![Statement::Vmap {
                        key: Field::Iifname,
                        map: name("vm"),
                    }],
                    None,
                )
                .unwrap(),
                Rule::new(
                    vec![Match::eq(Field::Iifname, Value::ifname_prefix("cali").unwrap()).unwrap()],
                    vec![
                        Statement::Counter,
                        Statement::Verdict(Verdict::Goto(name("b"))),
                    ],
                    Some(Comment::new("hello world").unwrap()),
                )
                .unwrap(),
            ],
        );
        let b = Chain::regular(
            name("b"),
            vec![
                Rule::new(
                    vec![
                        Match::ne(
                            Field::CtState,
                            Value::ct_states(&[CtState::Related, CtState::Established]).unwrap(),
                        )
                        .unwrap(),
                        Match::in_set(
                            Field::L4Proto,
                            false,
                            vec![Value::Proto(L4Proto::Tcp), Value::Proto(L4Proto::Other(47))],
                        )
                        .unwrap(),
                        Match::new(
                            vec![Field::IpDaddr, Field::Port(PortProto::Tcp, PortEnd::Dport)],
                            false,
                            Operand::Named(name("c")),
                        )
                        .unwrap(),
                    ],
                    vec![Statement::Nftrace, Statement::Verdict(Verdict::Accept)],
                    None,
                )
                .unwrap(),
            ],
        );
        let expected = Table::new(Family::Ip, name("t"))
            .with_set(s4)
            .and_then(|t| t.with_set(c))
            .and_then(|t| t.with_map(vm))
            .and_then(|t| t.with_chain(a))
            .and_then(|t| t.with_chain(b))
            .unwrap();
        assert_eq!(parsed, expected);
    }

    #[test]
    fn what_we_do_not_model_is_an_error() {
        let foreign = r#"{"nftables": [{"table": {"family": "ip", "name": "t"}},
            {"chain": {"family": "ip", "table": "t", "name": "c"}},
            {"rule": {"family": "ip", "table": "t", "chain": "c", "expr": [{"limit": {"rate": 5}}]}}]}"#;
        let error = parse_table(foreign).unwrap_err().to_string();
        assert!(error.contains("limit"), "{error}");
        let flowtable = r#"{"nftables": [{"table": {"family": "ip", "name": "t"}}, {"flowtable": {"name": "f"}}]}"#;
        assert!(parse_table(flowtable).is_err());
        assert!(parse_table(r#"{"other": []}"#).is_err());
        assert!(parse_table("not json").is_err());
        let bad_name = r#"{"nftables": [{"table": {"family": "ip", "name": "9t"}}]}"#;
        assert!(matches!(parse_table(bad_name), Err(ParseError::Invalid(_))));
    }
}
