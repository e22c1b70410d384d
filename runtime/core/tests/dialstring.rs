//! Dialstring parsing, scope rules, expansion and explain output.

use dialtone_core::dialstring::{
    escape, expand, parse, Dialstring, ExpandError, ExpandErrorKind, Level, ParseError,
    ParseErrorKind, Vars, MAX_EXPANDED_LEN, MAX_HELPER_CALLS, MAX_PEERS,
};
use dialtone_core::HangupCause;
use serde_json::json;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

fn ok(s: &str) -> Dialstring {
    match parse(s) {
        Ok(d) => d,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn bad(s: &str) -> ParseError {
    match parse(s) {
        Ok(d) => panic!("{s:?} should not parse, got {d:?}"),
        Err(e) => e,
    }
}

fn vars(pairs: &[(&str, &str)]) -> Vars {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Every leg as `(branch, group, endpoint, data)`.
fn shape(d: &Dialstring) -> Vec<(usize, usize, String, String)> {
    let mut out = Vec::new();
    for (bi, b) in d.branches.iter().enumerate() {
        for (gi, g) in b.groups.iter().enumerate() {
            for l in &g.legs {
                out.push((bi, gi, l.endpoint.clone(), l.data.clone()));
            }
        }
    }
    out
}

/// The single leg of a one-leg dialstring, as `(endpoint, data)`.
fn one_leg(s: &str) -> (String, String) {
    let d = ok(s);
    assert_eq!(d.leg_count(), 1, "{s:?} should be one leg: {d:?}");
    let l = &d.branches[0].groups[0].legs[0];
    (l.endpoint.clone(), l.data.clone())
}

fn leg_vars(d: &Dialstring, branch: usize, group: usize, leg: usize) -> Vars {
    let b = &d.branches[branch];
    b.groups[group].legs[leg].effective_vars(b, d)
}

fn no_vars(_: &str) -> Option<String> {
    None
}

fn no_helper(name: &str, _: &str) -> Result<String, String> {
    Err(format!("no helper {name}"))
}

/// Deterministic xorshift64* PRNG (no extra dependencies).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn string(&mut self, alphabet: &[char], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len())])
            .collect()
    }
}

const GARBAGE: &[char] = &[
    'a', 'b', 'x', '1', '0', '/', '/', ',', ',', '|', ':', ':', '_', '[', ']', '{', '}', '<', '>',
    '=', '=', '^', '\'', '\\', ' ', ' ', '\t', '$', '(', ')', '@', 'é', '€', '😀', '\n', '\0',
];

/// Pieces of dialstring syntax, for random strings that often parse.
const FRAGMENTS: &[&str] = &[
    "sofia/a/1",
    "user/1000@x",
    "e/",
    "x",
    "/",
    ",",
    ",",
    "|",
    ":_:",
    "{a=1}",
    "[b=2]",
    "<c=3>",
    "{^^:d=1:e=x,y}",
    "[local_var_clobber=true]",
    "'",
    "'q,|'",
    "\\,",
    "\\",
    " ",
    "[",
    "]",
    "{",
    "}",
    "<",
    ">",
    "=",
    "^^",
    "é",
    "\t",
];

// ---------------------------------------------------------------------------
// every example dialstring of the reference (freeswitch-semantics.md, 1-2)
// ---------------------------------------------------------------------------

#[test]
fn reference_single_leg_examples() {
    let table: &[(&str, &str, &str)] = &[
        (
            "sofia/internal/1000@10.0.0.5:5060;transport=tcp",
            "sofia",
            "internal/1000@10.0.0.5:5060;transport=tcp",
        ),
        (
            "sofia/internal/sip:1000@10.0.0.5",
            "sofia",
            "internal/sip:1000@10.0.0.5",
        ),
        (
            "sofia/internal/sips:1000@10.0.0.5",
            "sofia",
            "internal/sips:1000@10.0.0.5",
        ),
        ("sofia/internal/1000", "sofia", "internal/1000"),
        (
            "sofia/internal/1000%example.com",
            "sofia",
            "internal/1000%example.com",
        ),
        (
            "sofia/gateway/carrier1/15551234567",
            "sofia",
            "gateway/carrier1/15551234567",
        ),
        (
            "sofia/gateway/carrier1/15551234567;transport=udp",
            "sofia",
            "gateway/carrier1/15551234567;transport=udp",
        ),
        (
            "sofia/gateway/carrier1/15551234567^15559876543",
            "sofia",
            "gateway/carrier1/15551234567^15559876543",
        ),
        ("user/1000@example.com", "user", "1000@example.com"),
        ("user/1000", "user", "1000"),
        ("group/sales@example.com", "group", "sales@example.com"),
        ("group/sales@example.com+F", "group", "sales@example.com+F"),
        ("loopback/9664/default/XML", "loopback", "9664/default/XML"),
        (
            "loopback/app=voicemail:default ${domain} 1000",
            "loopback",
            "app=voicemail:default ${domain} 1000",
        ),
        ("error/USER_BUSY", "error", "USER_BUSY"),
        (
            "error/NO_ROUTE_DESTINATION",
            "error",
            "NO_ROUTE_DESTINATION",
        ),
        ("error/user_not_registered", "error", "user_not_registered"),
        ("null/anything", "null", "anything"),
        (
            "verto.rtc/1000@example.com",
            "verto.rtc",
            "1000@example.com",
        ),
        ("verto.rtc/u:<jsock-uuid>", "verto.rtc", "u:<jsock-uuid>"),
        (
            "rtmp/<rtmp-session-uuid>/1000@example.com",
            "rtmp",
            "<rtmp-session-uuid>/1000@example.com",
        ),
        (
            "rtmp/<uuid>/1000@example.com",
            "rtmp",
            "<uuid>/1000@example.com",
        ),
        ("portaudio/auto_answer", "portaudio", "auto_answer"),
        ("portaudio/anything", "portaudio", "anything"),
        ("portaudio/endpoint/x", "portaudio", "endpoint/x"),
        (
            "gsmopen/dongle0/15551234567",
            "gsmopen",
            "dongle0/15551234567",
        ),
        ("gsmopen/ANY/123", "gsmopen", "ANY/123"),
        ("gsmopen/RR/123", "gsmopen", "RR/123"),
        ("freetdm/1/a/15551234567", "freetdm", "1/a/15551234567"),
        ("freetdm/wp1/3/15551234567", "freetdm", "wp1/3/15551234567"),
        (
            "freetdm/grp1/A/15551234567",
            "freetdm",
            "grp1/A/15551234567",
        ),
        ("freetdm/0/a/15551234567", "freetdm", "0/a/15551234567"),
        ("skinny/internal/1001", "skinny", "internal/1001"),
        (
            "dingaling/gtalk/user@gmail.com",
            "dingaling",
            "gtalk/user@gmail.com",
        ),
        (
            "dingaling/gtalk/user@gmail.com:5551234",
            "dingaling",
            "gtalk/user@gmail.com:5551234",
        ),
        ("pickup/sales@example.com", "pickup", "sales@example.com"),
        ("lcr/15551234567", "lcr", "15551234567"),
        ("lcr/default/15551234567", "lcr", "default/15551234567"),
        ("modem/1", "modem", "1"),
        ("null/", "null", ""),
        (
            "sofia/internal/1000@[2001:db8::1]:5060",
            "sofia",
            "internal/1000@[2001:db8::1]:5060",
        ),
    ];
    for &(input, endpoint, data) in table {
        let d = ok(input);
        assert!(!d.is_enterprise(), "{input}");
        assert!(d.enterprise_vars.is_empty(), "{input}");
        assert_eq!(d.branches.len(), 1, "{input}");
        assert!(d.branches[0].global_vars.is_empty(), "{input}");
        assert_eq!(d.branches[0].groups.len(), 1, "{input}");
        let leg = &d.branches[0].groups[0].legs[0];
        assert_eq!(d.leg_count(), 1, "{input}");
        assert!(leg.local_vars.is_empty(), "{input}");
        assert_eq!(leg.endpoint, endpoint, "{input}");
        assert_eq!(leg.data, data, "{input}");
    }
}

#[test]
fn helper_outputs_of_the_reference_parse() {
    // sofia_contact: one leg per registration, joined with ','.
    let d = ok("sofia/internal/sip:1000@1.2.3.4,sofia/internal/sip:1000@5.6.7.8");
    assert_eq!(
        shape(&d),
        [
            (0, 0, "sofia".into(), "internal/sip:1000@1.2.3.4".into()),
            (0, 0, "sofia".into(), "internal/sip:1000@5.6.7.8".into()),
        ]
    );
    // verto_contact and rtmp_contact.
    let d = ok("verto.rtc/u:abc,verto.rtc/u:def");
    assert_eq!(
        shape(&d),
        [
            (0, 0, "verto.rtc".into(), "u:abc".into()),
            (0, 0, "verto.rtc".into(), "u:def".into()),
        ]
    );
    let d = ok("rtmp/uuid1/1000@example.com");
    assert_eq!(
        shape(&d),
        [(0, 0, "rtmp".into(), "uuid1/1000@example.com".into())]
    );
    // group_call +F joins with '|', +E with ':_:'.
    let d = ok("user/1000@example.com|user/1001@example.com");
    assert_eq!(
        shape(&d),
        [
            (0, 0, "user".into(), "1000@example.com".into()),
            (0, 1, "user".into(), "1001@example.com".into()),
        ]
    );
    let d = ok("user/1000@example.com:_:user/1001@example.com");
    assert!(d.is_enterprise());
    assert_eq!(
        shape(&d),
        [
            (0, 0, "user".into(), "1000@example.com".into()),
            (1, 0, "user".into(), "1001@example.com".into()),
        ]
    );
}

#[test]
fn vanilla_user_dial_string() {
    let d = ok(
        "{^^:sip_invite_domain=example.com:presence_id=1000@example.com}\
                sofia/internal/sip:1000@1.2.3.4,verto.rtc/u:abc",
    );
    assert!(!d.is_enterprise());
    assert_eq!(d.leg_count(), 2);
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[
            ("sip_invite_domain", "example.com"),
            ("presence_id", "1000@example.com"),
        ])
    );
    assert_eq!(
        shape(&d),
        [
            (0, 0, "sofia".into(), "internal/sip:1000@1.2.3.4".into()),
            (0, 0, "verto.rtc".into(), "u:abc".into()),
        ]
    );
    for leg in 0..2 {
        assert_eq!(
            leg_vars(&d, 0, 0, leg),
            vars(&[
                ("sip_invite_domain", "example.com"),
                ("presence_id", "1000@example.com"),
            ])
        );
    }
}

#[test]
fn ignore_early_media_simultaneous_ring() {
    let d = ok("{ignore_early_media=true}sofia/gateway/a/1555,sofia/gateway/b/1555");
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[("ignore_early_media", "true")])
    );
    assert_eq!(d.branches[0].groups.len(), 1);
    assert_eq!(d.branches[0].groups[0].legs.len(), 2);
    assert_eq!(
        leg_vars(&d, 0, 0, 1),
        vars(&[("ignore_early_media", "true")])
    );
}

#[test]
fn leg_timeout_failover_idiom() {
    let d = ok(
        "[leg_timeout=10]sofia/gateway/a/1555|[leg_timeout=20]sofia/gateway/b/1555|error/USER_BUSY",
    );
    assert_eq!(
        shape(&d),
        [
            (0, 0, "sofia".into(), "gateway/a/1555".into()),
            (0, 1, "sofia".into(), "gateway/b/1555".into()),
            (0, 2, "error".into(), "USER_BUSY".into()),
        ]
    );
    let g = &d.branches[0].groups;
    assert_eq!(g[0].legs[0].local_vars, vars(&[("leg_timeout", "10")]));
    assert_eq!(g[1].legs[0].local_vars, vars(&[("leg_timeout", "20")]));
    assert!(g[2].legs[0].local_vars.is_empty());
}

#[test]
fn full_combination() {
    let d = ok(
        "<a=1>{ignore_early_media=true}[leg_timeout=10]sofia/internal/1000,\
                [leg_timeout=15]verto.rtc/u:abc|user/1001@example.com\
                :_:{b=2}[c=3]loopback/9664/default/XML",
    );
    assert!(d.is_enterprise());
    assert_eq!(d.leg_count(), 4);
    assert_eq!(d.enterprise_vars, vars(&[("a", "1")]));
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[("ignore_early_media", "true")])
    );
    assert_eq!(d.branches[1].global_vars, vars(&[("b", "2")]));
    assert_eq!(
        shape(&d),
        [
            (0, 0, "sofia".into(), "internal/1000".into()),
            (0, 0, "verto.rtc".into(), "u:abc".into()),
            (0, 1, "user".into(), "1001@example.com".into()),
            (1, 0, "loopback".into(), "9664/default/XML".into()),
        ]
    );
    assert_eq!(
        leg_vars(&d, 0, 0, 1),
        vars(&[
            ("a", "1"),
            ("ignore_early_media", "true"),
            ("leg_timeout", "15")
        ])
    );
    assert_eq!(
        leg_vars(&d, 0, 1, 0),
        vars(&[("a", "1"), ("ignore_early_media", "true")])
    );
    assert_eq!(
        leg_vars(&d, 1, 0, 0),
        vars(&[("a", "1"), ("b", "2"), ("c", "3")])
    );
}

// ---------------------------------------------------------------------------
// enterprise
// ---------------------------------------------------------------------------

#[test]
fn enterprise_leading_braces_belong_to_first_branch_only() {
    let d = ok("{x=1}sofia/a/1:_:sofia/b/2");
    assert!(d.is_enterprise());
    assert_eq!(d.branches[0].global_vars, vars(&[("x", "1")]));
    assert!(d.branches[1].global_vars.is_empty());
    assert_eq!(leg_vars(&d, 1, 0, 0), Vars::new());
}

#[test]
fn enterprise_angle_vars_apply_to_every_branch() {
    let d = ok("<x=1,y=2>sofia/a/1:_:{y=3}sofia/b/2|sofia/c/3");
    assert_eq!(d.enterprise_vars, vars(&[("x", "1"), ("y", "2")]));
    assert_eq!(leg_vars(&d, 0, 0, 0), vars(&[("x", "1"), ("y", "2")]));
    assert_eq!(leg_vars(&d, 1, 0, 0), vars(&[("x", "1"), ("y", "3")]));
    assert_eq!(leg_vars(&d, 1, 1, 0), vars(&[("x", "1"), ("y", "3")]));
    assert_eq!(d.branches[1].groups.len(), 2);
}

#[test]
fn angle_vars_without_enterprise_and_per_branch() {
    let d = ok("<a=1>{b=2}sofia/a/1");
    assert!(!d.is_enterprise());
    assert_eq!(d.enterprise_vars, vars(&[("a", "1")]));
    assert_eq!(d.branches[0].global_vars, vars(&[("b", "2")]));
    // A '<>' leading a later branch is that branch's originate's variables.
    let d = ok("sofia/a/1 :_: <c=3>{d=4}sofia/b/2");
    assert!(d.enterprise_vars.is_empty());
    assert_eq!(d.branches[1].global_vars, vars(&[("c", "3"), ("d", "4")]));
    assert_eq!(shape(&d)[1], (1, 0, "sofia".into(), "b/2".into()));
}

#[test]
fn enterprise_only_at_top_level() {
    for s in [
        r"sofia/a/x\:_:y",
        "sofia/a/'x:_:y'",
        "{a=x:_:y}sofia/a/1",
        "[a=x:_:y]sofia/a/1",
        "sofia/a/[x:_:y]",
    ] {
        let d = ok(s);
        assert!(!d.is_enterprise(), "{s}");
        assert_eq!(d.leg_count(), 1, "{s}");
    }
    assert_eq!(one_leg(r"sofia/a/x\:_:y").1, "a/x:_:y");
    assert_eq!(
        ok("{a=x:_:y}sofia/a/1").branches[0].global_vars,
        vars(&[("a", "x:_:y")])
    );
    // ':' alone (ports, sip: URIs) is data.
    assert_eq!(one_leg("sofia/a/sip:1000@h:5060").1, "a/sip:1000@h:5060");
}

#[test]
fn leg_count_and_explain_counts() {
    let d = ok("a/1,a/2|a/3:_:b/1,b/2,b/3");
    assert_eq!(d.leg_count(), 6);
    assert_eq!(d.legs().count(), 6);
    let eps: Vec<&str> = d.legs().map(|(_, l)| l.data.as_str()).collect();
    assert_eq!(eps, ["1", "2", "3", "1", "2", "3"]);
}

// ---------------------------------------------------------------------------
// variable blocks
// ---------------------------------------------------------------------------

#[test]
fn custom_separator() {
    let d = ok("{^^:a=1:b=x,y}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "1"), ("b", "x,y")]));
    let d = ok("[^^;a=1;b=x,y|z]sofia/a/1");
    assert_eq!(
        d.branches[0].groups[0].legs[0].local_vars,
        vars(&[("a", "1"), ("b", "x,y|z")])
    );
    let d = ok("<^^!a=1!b=2,3>sofia/a/1");
    assert_eq!(d.enterprise_vars, vars(&[("a", "1"), ("b", "2,3")]));
}

#[test]
fn var_values_empty_with_equals_and_trimmed() {
    let d = ok("{a=,b=x=y=z, c = 3 ,d='  padded  '}sofia/a/1");
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[("a", ""), ("b", "x=y=z"), ("c", "3"), ("d", "  padded  ")])
    );
}

#[test]
fn var_blocks_merge_and_later_assignment_wins() {
    let d = ok("{a=1}{b=2}{a=3}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "3"), ("b", "2")]));
    let d = ok("{a=1,b=2,a=4}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "4"), ("b", "2")]));
    let d = ok("[a=1][b=2] [a=5]sofia/a/1");
    assert_eq!(
        d.branches[0].groups[0].legs[0].local_vars,
        vars(&[("a", "5"), ("b", "2")])
    );
    let d = ok("<a=1><b=2>sofia/a/1");
    assert_eq!(d.enterprise_vars, vars(&[("a", "1"), ("b", "2")]));
}

#[test]
fn empty_blocks_and_elements_are_allowed() {
    let d = ok("{}[]sofia/a/1");
    assert!(d.branches[0].global_vars.is_empty());
    assert!(d.branches[0].groups[0].legs[0].local_vars.is_empty());
    let d = ok("{a=1,,b=2,}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "1"), ("b", "2")]));
}

#[test]
fn commas_inside_blocks_do_not_split_legs() {
    let d = ok("[a=1,b=2]sofia/a/1,[c=3,d=4]sofia/b/2");
    assert_eq!(d.leg_count(), 2);
    let g = &d.branches[0].groups[0];
    assert_eq!(g.legs[0].local_vars, vars(&[("a", "1"), ("b", "2")]));
    assert_eq!(g.legs[1].local_vars, vars(&[("c", "3"), ("d", "4")]));
    // Nested brackets stay inside the value.
    let d = ok("{sip_h_X=<sip:a@b;x=1,y>,z=[1,2]}sofia/a/1");
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[("sip_h_X", "<sip:a@b;x=1,y>"), ("z", "[1,2]")])
    );
    // A pipe inside a block does not split groups either.
    let d = ok("{a=x|y}sofia/a/1");
    assert_eq!(d.branches[0].groups.len(), 1);
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "x|y")]));
}

// ---------------------------------------------------------------------------
// scope precedence
// ---------------------------------------------------------------------------

#[test]
fn braces_beat_brackets_by_default() {
    let d = ok("{a=global,b=g}[a=local,c=l]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("a", "global"), ("b", "g"), ("c", "l")])
    );
}

#[test]
fn local_var_clobber_lets_brackets_win() {
    let d = ok("{local_var_clobber=true,a=global}[a=local]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("local_var_clobber", "true"), ("a", "local")])
    );
    // Set in the leg's own block.
    let d = ok("{a=global}[a=local,local_var_clobber=yes]sofia/a/1,sofia/b/2");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("a", "local"), ("local_var_clobber", "yes")])
    );
    // Set in the enterprise block.
    let d = ok("<local_var_clobber=1>{a=global}[a=local]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("local_var_clobber", "1"), ("a", "local")])
    );
    // Not true: braces still win.
    let d = ok("{local_var_clobber=false,a=global}[a=local]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("local_var_clobber", "false"), ("a", "global")])
    );
}

#[test]
fn angle_vars_are_lowest() {
    let d = ok("<a=ent,b=ent,c=ent>{b=glob}[a=loc]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("a", "loc"), ("b", "glob"), ("c", "ent")])
    );
}

#[test]
fn effective_vars_keep_first_appearance_order() {
    let d = ok("<z=1>{y=2,z=3}[x=4,y=5,w=6]sofia/a/1");
    assert_eq!(
        leg_vars(&d, 0, 0, 0),
        vars(&[("z", "3"), ("y", "2"), ("x", "4"), ("w", "6")])
    );
}

// ---------------------------------------------------------------------------
// quoting, escapes, whitespace
// ---------------------------------------------------------------------------

#[test]
fn quotes_protect_delimiters_and_are_removed() {
    assert_eq!(
        one_leg("loopback/'app=playback:a,b|c.wav'"),
        ("loopback".into(), "app=playback:a,b|c.wav".into())
    );
    assert_eq!(one_leg("sofia/a/'x/y'").1, "a/x/y");
    assert_eq!(one_leg(r"sofia/a/'it\'s'").1, "a/it's");
    let d = ok("{a='x,y',b=2}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "x,y"), ("b", "2")]));
    // A quoted '/' is not the endpoint separator.
    assert_eq!(one_leg("'a/b'/c"), ("a/b".into(), "c".into()));
}

#[test]
fn backslash_escapes_everywhere() {
    assert_eq!(
        one_leg(r"sofia/a/1\,2\|3"),
        ("sofia".into(), "a/1,2|3".into())
    );
    assert_eq!(one_leg(r"so\/fia/x"), ("so/fia".into(), "x".into()));
    assert_eq!(
        one_leg(r"sofia/a/\[x\]\{y\}\<z\>"),
        ("sofia".into(), "a/[x]{y}<z>".into())
    );
    assert_eq!(
        one_leg(r"sofia/a/back\\slash"),
        ("sofia".into(), r"a/back\slash".into())
    );
    let d = ok(r"{a\=b=c\,d,e=f}sofia/a/1");
    assert_eq!(
        d.branches[0].global_vars,
        vars(&[("a=b", "c,d"), ("e", "f")])
    );
    let d = ok(r"{^^:a=x\:y:b=2}sofia/a/1");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "x:y"), ("b", "2")]));
    // An escaped '[' at the leg start is endpoint text, not a block.
    assert_eq!(one_leg(r"\[x/y"), ("[x".into(), "y".into()));
}

#[test]
fn whitespace_trimmed_around_legs_kept_in_data() {
    let d = ok("  sofia/a/1 ,  sofia/b/2  |  error/USER_BUSY ");
    assert_eq!(
        shape(&d),
        [
            (0, 0, "sofia".into(), "a/1".into()),
            (0, 0, "sofia".into(), "b/2".into()),
            (0, 1, "error".into(), "USER_BUSY".into()),
        ]
    );
    assert_eq!(
        one_leg("  loopback/app=voicemail:default example.com 1000  ").1,
        "app=voicemail:default example.com 1000"
    );
    // Escaped or quoted whitespace survives trimming.
    assert_eq!(one_leg(r"sofia/a/1\ ").1, "a/1 ");
    assert_eq!(one_leg("sofia/a/' 1 '").1, "a/ 1 ");
    let d = ok(" { a = 1 } [ b = 2 ] sofia/a/1 :_: sofia/b/2 ");
    assert_eq!(d.branches[0].global_vars, vars(&[("a", "1")]));
    assert_eq!(
        d.branches[0].groups[0].legs[0].local_vars,
        vars(&[("b", "2")])
    );
    assert_eq!(shape(&d)[1], (1, 0, "sofia".into(), "b/2".into()));
}

#[test]
fn split_at_first_slash_only() {
    assert_eq!(
        one_leg("sofia/gateway/carrier1/1555/extra"),
        ("sofia".into(), "gateway/carrier1/1555/extra".into())
    );
}

// ---------------------------------------------------------------------------
// malformed input
// ---------------------------------------------------------------------------

#[test]
fn error_kinds_and_positions() {
    use ParseErrorKind as K;
    let table: &[(&str, usize, ParseErrorKind)] = &[
        ("", 0, K::Empty),
        ("   \t ", 0, K::Empty),
        ("a/b,,c/d", 4, K::EmptyLeg),
        ("a/b, ,c/d", 5, K::EmptyLeg),
        ("a/b,", 4, K::EmptyLeg),
        (",a/b", 0, K::EmptyLeg),
        ("a/b|", 4, K::EmptyLeg),
        ("a/b||c/d", 4, K::EmptyLeg),
        ("|a/b", 0, K::EmptyLeg),
        ("a/b:_:", 6, K::EmptyLeg),
        (":_:a/b", 0, K::EmptyLeg),
        ("{a=1}", 5, K::EmptyLeg),
        ("<a=1>", 5, K::EmptyLeg),
        ("a/b:_:{a=1}", 11, K::EmptyLeg),
        ("[a=1sofia/a/1", 0, K::Unbalanced('[')),
        ("{a=1sofia/a/1", 0, K::Unbalanced('{')),
        ("<a=1sofia/a/1", 0, K::Unbalanced('<')),
        ("sofia/a/1[x", 9, K::Unbalanced('[')),
        ("sofia/a/1<x", 9, K::Unbalanced('<')),
        ("a=1]sofia/a/1", 3, K::UnexpectedClose(']')),
        ("a=1}sofia/a/1", 3, K::UnexpectedClose('}')),
        ("sofia/a/1>", 9, K::UnexpectedClose('>')),
        ("[a=1}sofia/a/1", 4, K::UnexpectedClose('}')),
        ("foo", 0, K::MissingEndpoint),
        ("sofia/a/1,foo", 10, K::MissingEndpoint),
        ("[a=1]foo", 5, K::MissingEndpoint),
        ("{a=1}[b=2]", 10, K::MissingEndpoint),
        ("/data", 0, K::EmptyEndpoint),
        ("sofia/a/1, /x", 11, K::EmptyEndpoint),
        ("{a}sofia/a/1", 1, K::BadVariable("a".into())),
        ("{=1}sofia/a/1", 1, K::BadVariable("=1".into())),
        ("[a=1,b]sofia/a/1", 5, K::BadVariable("b".into())),
        ("<a=1, x y >sofia/a/1", 6, K::BadVariable("x y".into())),
        ("{^^}sofia/a/1", 1, K::BadVariable("^^".into())),
        ("sofia/a/'x", 8, K::UnterminatedQuote),
        ("'", 0, K::UnterminatedQuote),
        ("sofia/a/x\\", 9, K::TrailingEscape),
        ("sofia/a/1,{a=1}sofia/b/2", 10, K::VarsAfterLeg('{')),
        ("sofia/a/1|{a=1}sofia/b/2", 10, K::VarsAfterLeg('{')),
        ("sofia/a/1,<a=1>sofia/b/2", 10, K::VarsAfterLeg('<')),
        ("sofia[a=1]/x", 5, K::VarsAfterLeg('[')),
        ("[a=1]sofia[b=2]/x", 10, K::VarsAfterLeg('[')),
        ("{a=1}[b=2]{c=3}sofia/x", 10, K::VarsAfterLeg('{')),
    ];
    for (input, pos, kind) in table {
        let e = bad(input);
        assert_eq!((e.pos, &e.kind), (*pos, kind), "{input:?}: {e}");
    }
}

#[test]
fn error_display_message() {
    let e = bad("{a=1}sofia/a/100,[leg_timeout=10 sofia/b/1");
    assert_eq!(e.pos, 17);
    assert_eq!(
        e.to_string(),
        "at position 17: unbalanced '[': no closing ']'"
    );
    assert_eq!(
        bad("a/b>").to_string(),
        "at position 3: unexpected '>' with no matching '<'"
    );
    assert_eq!(
        bad("foo").to_string(),
        "at position 0: leg has no '/' between endpoint and data (INVALID_URL)"
    );
    let e: &dyn std::error::Error = &bad("");
    assert_eq!(e.to_string(), "at position 0: empty dialstring");
}

#[test]
fn error_causes() {
    assert_eq!(bad("foo").cause(), HangupCause::InvalidUrl);
    assert_eq!(bad("/x").cause(), HangupCause::InvalidUrl);
    for s in ["", "a/b,", "[x", "a]", "{a}x/y", "'", "\\", "x/y,{a=1}z/w"] {
        assert_eq!(bad(s).cause(), HangupCause::DestinationOutOfOrder, "{s:?}");
    }
}

#[test]
fn error_explain_json() {
    let input = "{a=1}sofia/a/100,[leg_timeout=10 sofia/b/1";
    let e = bad(input);
    assert_eq!(
        e.explain(input),
        json!({
            "error": "unbalanced '[': no closing ']'",
            "position": 17,
            "cause": "DESTINATION_OUT_OF_ORDER",
            "context": "{a=1}sofia/a/100,[leg_timeout=10 sofia/b/1\n                 ^",
        })
    );
    // Long inputs are cut around the position; the caret still points at it.
    let long = format!("{}foo", "sofia/a/1,".repeat(10));
    let e = bad(&long);
    assert_eq!(e.pos, 100);
    let ctx = e.explain(&long)["context"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (line, caret) = ctx.split_once('\n').unwrap_or_default();
    assert!(line.starts_with("..."));
    assert!(line.ends_with("foo"));
    assert_eq!(caret.len(), 34);
    assert_eq!(&line[caret.len() - 1..], "foo");
}

#[test]
fn max_peers_legs_in_a_group() {
    let legs = |n: usize| {
        (0..n)
            .map(|i| format!("sofia/a/{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let d = ok(&legs(MAX_PEERS));
    assert_eq!(d.leg_count(), 128);
    assert_eq!(d.branches[0].groups[0].legs[127].data, "a/127");
    let s = legs(MAX_PEERS + 1);
    let e = bad(&s);
    assert_eq!(
        e.kind,
        ParseErrorKind::TooManyLegs {
            level: Level::Legs,
            max: 128
        }
    );
    assert_eq!(e.pos, s.rfind("sofia/a/128").unwrap_or_default());
    assert_eq!(
        e.to_string(),
        format!(
            "at position {}: too many ',' legs in a group: at most 128",
            e.pos
        )
    );
    // Commas inside brackets or escaped do not count.
    let s = format!(
        "[{}]sofia/a/1",
        (0..200)
            .map(|i| format!("v{i}=1"))
            .collect::<Vec<_>>()
            .join(",")
    );
    assert_eq!(ok(&s).branches[0].groups[0].legs[0].local_vars.len(), 200);
}

#[test]
fn max_peers_groups_and_branches() {
    let join = |n: usize, sep: &str| {
        (0..n)
            .map(|i| format!("sofia/a/{i}"))
            .collect::<Vec<_>>()
            .join(sep)
    };
    assert_eq!(ok(&join(128, "|")).branches[0].groups.len(), 128);
    assert_eq!(
        bad(&join(129, "|")).kind,
        ParseErrorKind::TooManyLegs {
            level: Level::Groups,
            max: 128
        }
    );
    assert_eq!(ok(&join(128, ":_:")).branches.len(), 128);
    assert_eq!(
        bad(&join(129, ":_:")).kind,
        ParseErrorKind::TooManyLegs {
            level: Level::Branches,
            max: 128
        }
    );
    // The limit is per group: 128 groups of 2 legs is fine.
    let s = (0..128)
        .map(|i| format!("a/{i},b/{i}"))
        .collect::<Vec<_>>()
        .join("|");
    assert_eq!(ok(&s).leg_count(), 256);
}

#[test]
fn long_and_deep_inputs_stay_linear() {
    let deep = format!("{}{}x/y", "[".repeat(100_000), "]".repeat(100_000));
    let e = bad(&deep);
    assert_eq!(e.pos, 1);
    assert!(matches!(&e.kind, ParseErrorKind::BadVariable(t) if t.len() == 199_998));
    let deep_data = format!("x/{}{}", "<".repeat(100_000), ">".repeat(100_000));
    assert_eq!(one_leg(&deep_data).1.len(), 200_000);
    let many = format!(
        "{{{}}}x/y",
        (0..100_000)
            .map(|i| format!("v{}={i}", i % 5000))
            .collect::<Vec<_>>()
            .join(",")
    );
    let d = ok(&many);
    assert_eq!(d.branches[0].global_vars.len(), 5000);
    assert_eq!(d.branches[0].global_vars[0], ("v0".into(), "95000".into()));
    assert_eq!(
        d.branches[0].global_vars[4999],
        ("v4999".into(), "99999".into())
    );
    assert_eq!(leg_vars(&d, 0, 0, 0).len(), 5000);
}

// ---------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------

#[test]
fn explain_json() {
    let d = ok("<e=1>{ignore_early_media=true,a=g}[a=l,leg_timeout=10]sofia/internal/1000,user/1001@example.com\
                :_:error/USER_BUSY");
    assert_eq!(
        d.explain(),
        json!({
            "enterprise": true,
            "enterprise_vars": {"e": "1"},
            "legs": 3,
            "branches": [
                {
                    "vars": {"ignore_early_media": "true", "a": "g"},
                    "groups": [{"legs": [
                        {
                            "endpoint": "sofia",
                            "target": "internal/1000",
                            "local_vars": {"a": "l", "leg_timeout": "10"},
                            "vars": {"e": "1", "ignore_early_media": "true", "a": "g", "leg_timeout": "10"},
                        },
                        {
                            "endpoint": "user",
                            "target": "1001@example.com",
                            "local_vars": {},
                            "vars": {"e": "1", "ignore_early_media": "true", "a": "g"},
                        },
                    ]}],
                },
                {
                    "vars": {},
                    "groups": [{"legs": [{
                        "endpoint": "error",
                        "target": "USER_BUSY",
                        "local_vars": {},
                        "vars": {"e": "1"},
                    }]}],
                },
            ],
        })
    );
}

// ---------------------------------------------------------------------------
// escape, Display round trip
// ---------------------------------------------------------------------------

#[test]
fn escape_escapes_all_syntax() {
    assert_eq!(
        escape(r"a\b'c,d|e[f]g{h}i<j>k^l$m:n/o=p q"),
        r"a\\b\'c\,d\|e\[f\]g\{h\}i\<j\>k\^l\$m\:n\/o\=p\ q"
    );
    assert_eq!(escape("plain-text_1.2@x%y+z;t"), "plain-text_1.2@x%y+z;t");
    assert_eq!(escape("é€"), "é€");
}

#[test]
fn display_is_canonical_and_round_trips() {
    let d = ok("<e=1> {a='x,y'z} [b=2]sofia/a/1 , user/1000|error/USER_BUSY :_: null/x");
    assert_eq!(
        d.to_string(),
        r"<e=1>{a=x\,yz}[b=2]sofia/a\/1,user/1000|error/USER_BUSY:_:null/x"
    );
    assert_eq!(ok(&d.to_string()), d);
    let parsed: Dialstring = match d.to_string().parse() {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(parsed, d);
}

// ---------------------------------------------------------------------------
// expansion
// ---------------------------------------------------------------------------

fn lookup(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name| {
        pairs
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    }
}

fn expand_ok(
    template: &str,
    vars: &dyn Fn(&str) -> Option<String>,
    helper: &mut dyn FnMut(&str, &str) -> Result<String, String>,
) -> String {
    match expand(template, vars, helper) {
        Ok(s) => s,
        Err(e) => panic!("{template:?}: {e}"),
    }
}

#[test]
fn expand_variables_are_escaped_unknown_are_empty() {
    let vars = lookup(&[("domain", "example.com"), ("user", "10 00")]);
    assert_eq!(
        expand_ok("user/${user}@${domain}${nope}", &vars, &mut no_helper),
        r"user/10\ 00@example.com"
    );
    assert_eq!(
        expand_ok("no refs/at all", &vars, &mut no_helper),
        "no refs/at all"
    );
    assert_eq!(expand_ok("x/${}", &vars, &mut no_helper), "x/");
}

#[test]
fn expand_helpers_output_raw_syntax() {
    let vars = lookup(&[("dialed_user", "1000"), ("dialed_domain", "example.com")]);
    let mut calls: Vec<(String, String)> = Vec::new();
    let mut helper = |name: &str, args: &str| -> Result<String, String> {
        calls.push((name.to_string(), args.to_string()));
        match name {
            "sofia_contact" => {
                Ok("sofia/internal/sip:1000@1.2.3.4,sofia/internal/sip:1000@5.6.7.8".into())
            }
            "verto_contact" => Ok("verto.rtc/u:abc".into()),
            _ => Err("unknown".into()),
        }
    };
    let template = "{^^:sip_invite_domain=${dialed_domain}:presence_id=${dialed_user}@${dialed_domain}}\
                    ${sofia_contact(*/${dialed_user}@${dialed_domain})},${verto_contact(${dialed_user}@${dialed_domain})}";
    let out = expand_ok(template, &vars, &mut helper);
    assert_eq!(
        out,
        "{^^:sip_invite_domain=example.com:presence_id=1000@example.com}\
         sofia/internal/sip:1000@1.2.3.4,sofia/internal/sip:1000@5.6.7.8,verto.rtc/u:abc"
    );
    assert_eq!(
        calls,
        [
            (
                "sofia_contact".to_string(),
                "*/1000@example.com".to_string()
            ),
            ("verto_contact".to_string(), "1000@example.com".to_string()),
        ]
    );
    let d = ok(&out);
    assert_eq!(d.leg_count(), 3);
    assert_eq!(
        d.branches[0].global_vars,
        vars_of(&[
            ("sip_invite_domain", "example.com"),
            ("presence_id", "1000@example.com")
        ])
    );
}

fn vars_of(pairs: &[(&str, &str)]) -> Vars {
    vars(pairs)
}

#[test]
fn expand_helper_args_get_plain_values_and_nested_calls() {
    let vars = lookup(&[("u", "a,b|c")]);
    let mut seen = Vec::new();
    let mut helper = |name: &str, args: &str| -> Result<String, String> {
        seen.push(format!("{name}({args})"));
        Ok(match name {
            "inner" => format!("<{args}>"),
            _ => format!("out/{}", args.len()),
        })
    };
    let out = expand_ok("${outer(${u}-${inner(${u})}-(p))}", &vars, &mut helper);
    assert_eq!(seen, ["inner(a,b|c)", "outer(a,b|c-<a,b|c>-(p))"]);
    assert_eq!(out, "out/17");
}

#[test]
fn expand_output_is_never_expanded_again() {
    let vars = lookup(&[("a", "${b}"), ("b", "boom"), ("h", "${h2(x)}")]);
    let called = std::cell::RefCell::new(Vec::new());
    let mut helper = |name: &str, _: &str| -> Result<String, String> {
        called.borrow_mut().push(name.to_string());
        Ok("x/${b}".into())
    };
    let out = expand_ok("e/${a}", &vars, &mut helper);
    assert_eq!(out, r"e/\$\{b\}");
    assert_eq!(one_leg(&out), ("e".into(), "${b}".into()));
    // Helper output is raw but not re-expanded either.
    let out = expand_ok("${h1()}", &vars, &mut helper);
    assert_eq!(out, "x/${b}");
    assert_eq!(*called.borrow(), ["h1"]);
    let out = expand_ok("e/${h}", &vars, &mut helper);
    assert_eq!(one_leg(&out).1, "${h2(x)}");
    assert_eq!(*called.borrow(), ["h1"]);
}

#[test]
fn expand_dollar_dollar_and_backslash() {
    let vars = lookup(&[("x", "1")]);
    assert_eq!(expand_ok("a/$${x}", &vars, &mut no_helper), "a/$1");
    assert_eq!(expand_ok(r"a/\${x}", &vars, &mut no_helper), r"a/\${x}");
    assert_eq!(one_leg(r"a/\${x}").1, "${x}");
    assert_eq!(expand_ok("a/$x $ {x}", &vars, &mut no_helper), "a/$x $ {x}");
}

#[test]
fn expand_errors() {
    let vars = lookup(&[("big", "")]);
    let err =
        |t: &str, helper: &mut dyn FnMut(&str, &str) -> Result<String, String>| -> ExpandError {
            match expand(t, &vars, helper) {
                Ok(s) => panic!("{t:?} should fail, got {s:?}"),
                Err(e) => e,
            }
        };
    let e = err("user/${dest", &mut no_helper);
    assert_eq!((e.pos, &e.kind), (5, &ExpandErrorKind::Unterminated));
    assert_eq!(e.to_string(), "at position 5: unterminated '${'");
    let e = err("x/${f(a}", &mut no_helper);
    assert_eq!(
        (e.pos, &e.kind),
        (2, &ExpandErrorKind::UnclosedCall { name: "f".into() })
    );
    assert_eq!(e.to_string(), "at position 2: '${f(' has no matching ')}'");
    let e = err("x/${f(a)b}", &mut no_helper);
    assert_eq!(e.kind, ExpandErrorKind::UnclosedCall { name: "f".into() });
    let e = err("x/y,${sofia_contact(1000)}", &mut no_helper);
    assert_eq!(
        (e.pos, &e.kind),
        (
            4,
            &ExpandErrorKind::Helper {
                name: "sofia_contact".into(),
                message: "no helper sofia_contact".into()
            }
        )
    );
    // Position of an error inside helper arguments is in template bytes.
    let e = err("x/${f(${g)}", &mut no_helper);
    assert_eq!(e.kind, ExpandErrorKind::UnclosedCall { name: "f".into() });
    let mut fail_g = |name: &str, args: &str| -> Result<String, String> {
        if name == "g" {
            Err(format!("g got {args}"))
        } else {
            Ok(String::new())
        }
    };
    let e = err("x/${f(a,${g(1)})}", &mut fail_g);
    assert_eq!(
        (e.pos, &e.kind),
        (
            8,
            &ExpandErrorKind::Helper {
                name: "g".into(),
                message: "g got 1".into()
            }
        )
    );
}

#[test]
fn expand_too_long() {
    let big = "x".repeat(40 * 1024);
    let vars = move |_: &str| Some(big.clone());
    assert_eq!(
        expand_ok("a/${v}", &vars, &mut no_helper).len(),
        2 + 40 * 1024
    );
    let e = match expand("a/${v}${v}", &vars, &mut no_helper) {
        Ok(_) => panic!("should be too long"),
        Err(e) => e,
    };
    assert_eq!(
        (e.pos, e.kind),
        (
            6,
            ExpandErrorKind::TooLong {
                max: MAX_EXPANDED_LEN
            }
        )
    );
    // Helper output counts too.
    let mut helper =
        |_: &str, _: &str| -> Result<String, String> { Ok("y".repeat(MAX_EXPANDED_LEN)) };
    let e = match expand("a/${h()}", &no_vars, &mut helper) {
        Ok(_) => panic!("should be too long"),
        Err(e) => e,
    };
    assert_eq!(
        e.kind,
        ExpandErrorKind::TooLong {
            max: MAX_EXPANDED_LEN
        }
    );
    // Exactly the limit is fine.
    let mut helper =
        |_: &str, _: &str| -> Result<String, String> { Ok("y".repeat(MAX_EXPANDED_LEN)) };
    assert_eq!(
        expand_ok("${h()}", &no_vars, &mut helper).len(),
        MAX_EXPANDED_LEN
    );
}

#[test]
fn expand_helper_call_limit() {
    let n = std::cell::Cell::new(0);
    let mut helper = |_: &str, _: &str| -> Result<String, String> {
        n.set(n.get() + 1);
        Ok("a/1".into())
    };
    let t64 = vec!["${h()}"; MAX_HELPER_CALLS].join(",");
    let out = expand_ok(&t64, &no_vars, &mut helper);
    assert_eq!(ok(&out).leg_count(), 64);
    let t65 = vec!["${h()}"; MAX_HELPER_CALLS + 1].join(",");
    let e = match expand(&t65, &no_vars, &mut helper) {
        Ok(_) => panic!("65 calls should fail"),
        Err(e) => e,
    };
    assert_eq!(
        (e.pos, e.kind),
        (64 * 7, ExpandErrorKind::TooManyHelperCalls { max: 64 })
    );
    assert_eq!(n.get(), 128);
    // Deep nesting is bounded by the same limit, without recursion blow-up.
    let deep = format!("{}x{}", "${h(".repeat(10_000), ")}".repeat(10_000));
    let e = match expand(&deep, &no_vars, &mut helper) {
        Ok(_) => panic!("deep nesting should fail"),
        Err(e) => e,
    };
    assert_eq!(e.kind, ExpandErrorKind::TooManyHelperCalls { max: 64 });
}

// ---------------------------------------------------------------------------
// injection: variable values can never add syntax
// ---------------------------------------------------------------------------

#[test]
fn injection_values_stay_one_literal_leg() {
    let values = [
        "1000,sofia/gateway/x/1",
        "1000|sofia/gateway/x/1",
        "1000:_:sofia/gateway/x/1",
        "[x=y]sofia/gateway/x/1",
        "{a=b}",
        "<a=b>",
        "'",
        "it's 'quoted'",
        "\\",
        "a\\,b",
        "${helper(x)}",
        "${other}",
        "]}>",
        "^^:a=1",
        " padded ",
        "sofia/gateway/x/1",
    ];
    for value in values {
        let vars = |name: &str| (name == "dest").then(|| value.to_string());
        let mut helper = |name: &str, _: &str| -> Result<String, String> {
            panic!("helper {name} must not be called for {value:?}")
        };
        let out = expand_ok("user/${dest}@example.com", &vars, &mut helper);
        let d = ok(&out);
        assert_eq!(d.leg_count(), 1, "{value:?} -> {out:?}");
        assert!(!d.is_enterprise(), "{value:?}");
        let leg = &d.branches[0].groups[0].legs[0];
        assert_eq!(leg.endpoint, "user", "{value:?}");
        assert_eq!(leg.data, format!("{value}@example.com"), "{value:?}");
        assert!(leg.local_vars.is_empty() && d.branches[0].global_vars.is_empty());

        // At the very start of a leg the value cannot pick the endpoint.
        let out = expand_ok("${dest}", &vars, &mut helper);
        assert_eq!(bad(&out).kind, ParseErrorKind::MissingEndpoint, "{value:?}");

        // Inside a variable block it stays one value.
        let out = expand_ok("{a=${dest},b=2}x/y", &vars, &mut helper);
        let d = ok(&out);
        assert_eq!(
            d.branches[0].global_vars,
            vars_of(&[("a", value), ("b", "2")]),
            "{value:?}"
        );
        assert_eq!(d.leg_count(), 1);
    }
}

#[test]
fn injection_exact_example() {
    let vars = |name: &str| (name == "dest").then(|| "1000,sofia/gateway/x/1".to_string());
    let out = expand_ok("user/${dest}@example.com", &vars, &mut no_helper);
    assert_eq!(out, r"user/1000\,sofia\/gateway\/x\/1@example.com");
    assert_eq!(
        one_leg(&out),
        ("user".into(), "1000,sofia/gateway/x/1@example.com".into())
    );
}

// ---------------------------------------------------------------------------
// never panic (property style, deterministic)
// ---------------------------------------------------------------------------

#[test]
fn parse_never_panics_and_display_round_trips() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut parsed = 0;
    for round in 0..30_000_usize {
        let s = if round.is_multiple_of(2) {
            rng.string(GARBAGE, 40)
        } else {
            (0..rng.below(12))
                .map(|_| FRAGMENTS[rng.below(FRAGMENTS.len())])
                .collect()
        };
        if let Ok(d) = parse(&s) {
            parsed += 1;
            assert!(d.leg_count() >= 1);
            assert!(d.legs().all(|(_, l)| !l.endpoint.is_empty()));
            let again = match parse(&d.to_string()) {
                Ok(a) => a,
                Err(e) => panic!("{s:?} -> {:?} does not re-parse: {e}", d.to_string()),
            };
            assert_eq!(again, d, "{s:?}");
            let _ = d.explain();
        } else if let Err(e) = parse(&s) {
            assert!(e.pos <= s.len(), "{s:?}: {e:?}");
            let _ = e.explain(&s);
        }
    }
    // The generator does produce valid dialstrings too.
    assert!(parsed > 500, "only {parsed} parsed");
}

#[test]
fn parse_never_panics_on_mutated_valid_strings() {
    let seeds = [
        "<a=1>{^^:b=2:c=x,y}[leg_timeout=10]sofia/internal/1000@h:5060,verto.rtc/u:<id>|error/USER_BUSY:_:{d='4'}user/1000",
        r"loopback/app=voicemail:default\ x 1000,[x=\,]null/x",
    ];
    let mut rng = Rng(42);
    for _ in 0..20_000 {
        let base: Vec<char> = seeds[rng.below(seeds.len())].chars().collect();
        let mut s = base.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(s.len() + 1);
            match rng.below(3) {
                0 if at < s.len() => {
                    s.remove(at);
                }
                1 => s.insert(at, GARBAGE[rng.below(GARBAGE.len())]),
                _ if at < s.len() => s[at] = GARBAGE[rng.below(GARBAGE.len())],
                _ => {}
            }
        }
        let s: String = s.into_iter().collect();
        match parse(&s) {
            Ok(d) => assert_eq!(ok(&d.to_string()), d, "{s:?}"),
            Err(e) => assert!(e.pos <= s.len()),
        }
    }
}

#[test]
fn escape_round_trips_any_value() {
    let mut rng = Rng(7);
    for _ in 0..10_000 {
        let value = rng.string(GARBAGE, 24);
        let text = format!("e/{}", escape(&value));
        assert_eq!(one_leg(&text), ("e".into(), value.clone()), "{value:?}");
        let text = format!("[v={}]e/x", escape(&value));
        let d = ok(&text);
        assert_eq!(
            d.branches[0].groups[0].legs[0].local_vars,
            vars(&[("v", &value)]),
            "{value:?}"
        );
    }
}

#[test]
fn expand_never_panics() {
    let mut rng = Rng(1234);
    let alphabet: Vec<char> = GARBAGE
        .iter()
        .copied()
        .chain(['$', '$', '{', '}', '(', ')', 'h'])
        .collect();
    let vars = |name: &str| Some(format!("<{name}>"));
    let mut helper = |name: &str, args: &str| -> Result<String, String> {
        if name.len().is_multiple_of(2) {
            Ok(format!("{name}/{args}"))
        } else {
            Err("odd".into())
        }
    };
    for _ in 0..30_000 {
        let t = rng.string(&alphabet, 40);
        match expand(&t, &vars, &mut helper) {
            Ok(out) => {
                assert!(out.len() <= MAX_EXPANDED_LEN);
                let _ = parse(&out);
            }
            Err(e) => assert!(e.pos <= t.len(), "{t:?}: {e:?}"),
        }
    }
}
