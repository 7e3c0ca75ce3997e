//! `custodia demo`: three agencies on this machine, each a real node on
//! 127.0.0.1 with its own key, store and directory, run in this process;
//! a case is opened, shared, evidence registered and custody transferred
//! across them through a liaison desk, and every step is narrated with
//! the `custodia` commands that do the same by hand. It ends with the
//! court's side: the case exported as a bundle and verified, and a copy
//! changed by one letter caught as INVALID.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use custodia_node::Peer;
use custodia_node::Running;
use custodia_node::Wanted;
use custodia_node::{EvidenceInfo, KnownAgency, Local, LocalError};
use custodia_protocol::{AgencyId, CaseId, CaseState, Role, Tlp};

use crate::output::Out;

/// The court bundle Berlin writes into its node folder.
const BUNDLE: &str = "case.custodia";

/// The words of the output an investigator may not know, explained.
const GLOSSARY: &str = "\
position: each agency numbers its own entries in a case #0, #1, #2, …; that number is the entry's position. Each entry also carries the fingerprint (SHA-256) of the agency's entry before it, so nothing can be removed, inserted or reordered without the break showing.
countersigned: a node regularly signs a short statement of what it holds of the other agencies' chains (\"Manila up to #4\"): a witness entry. Once another agency has countersigned an entry, its author can no longer rewrite it unnoticed.
witness: such a countersignature, an entry of its own in the case log.
equivocation: one agency signing two different entries for the same position, that is, telling two partners two different stories (or its key or node folder was copied). Custodia keeps both signed entries as proof, and every court bundle shows them.
withheld: a position shown only by its author, number and id, without its content (a TLP:RED entry for an agency it is not addressed to, or an entry left out of a court bundle). The chain still checks, and the report says what was not shown: withheld is never missing.";

/// How long any one replication step may take before the demo gives up.
const WAIT: Duration = Duration::from_secs(20);

/// The three invented agencies: directory name, agency name, country.
const AGENCIES: [(&str, &str, &str); 3] = [
    ("manila", "Manila Cybercrime Unit", "PH"),
    ("lyon", "Lyon Liaison Desk", "FR"),
    ("berlin", "Berlin Partner Unit", "DE"),
];

/// Prints the story as it happens (text), or collects it (JSON).
struct Narrator {
    json: bool,
    step: usize,
    steps: Vec<serde_json::Value>,
}

impl Narrator {
    fn step(&mut self, text: &str) {
        self.step += 1;
        if self.json {
            self.steps.push(
                serde_json::json!({"step": self.step, "text": text, "commands": [], "details": []}),
            );
        } else {
            crate::output::print(&format!("\n{}. {text}", self.step));
        }
    }

    /// The command that does this step by hand, run in the demo folder.
    fn command(&mut self, cmd: &str) {
        if self.json {
            if let Some(c) = self
                .steps
                .last_mut()
                .and_then(|s| s.get_mut("commands"))
                .and_then(|c| c.as_array_mut())
            {
                c.push(serde_json::json!(cmd));
            }
        } else {
            crate::output::print(&format!("   $ {cmd}"));
        }
    }

    fn detail(&mut self, text: &str) {
        if self.json {
            if let Some(d) = self
                .steps
                .last_mut()
                .and_then(|s| s.get_mut("details"))
                .and_then(|d| d.as_array_mut())
            {
                d.push(serde_json::json!(text));
            }
        } else {
            for line in text.lines() {
                crate::output::print(&format!("   {line}"));
            }
        }
    }
}

struct Node {
    name: &'static str,
    country: &'static str,
    dir: PathBuf,
    addr: String,
    agency: AgencyId,
}

impl Node {
    fn known(&self) -> KnownAgency {
        KnownAgency {
            agency: self.agency,
            name: self.name.to_owned(),
            country: self.country.to_owned(),
            peer: None,
            me: false,
            signed: false,
        }
    }

    fn open(&self) -> Result<Local, LocalError> {
        custodia_node::Local::open(&self.dir)
    }
}

pub(crate) fn run(chosen: Option<PathBuf>, keep: bool, out: &Out) -> anyhow::Result<ExitCode> {
    let (root, temp) = match chosen {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
            (d, None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("custodia-demo-")
                .tempdir()
                .context("creating a temporary folder")?;
            (t.path().to_owned(), Some(t))
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut say = Narrator {
        json: out.json(),
        step: 0,
        steps: Vec::new(),
    };
    let kept_at_end = temp.is_none() || keep;
    let result = rt.block_on(scenario(&root, kept_at_end, &mut say));
    rt.shutdown_timeout(Duration::from_secs(2));
    let kept = match temp {
        Some(t) if keep => Some(t.keep()),
        Some(t) => {
            drop(t);
            None
        }
        None => Some(root.clone()),
    };
    let (case, views) = result?;
    let text = match &kept {
        Some(dir) => format!(
            "\nThe three node directories are kept in {}.\nLook around: custodia --dir {} case log {}\nVerify the court bundle as a court would: custodia verify {} --html report.html",
            dir.display(),
            dir.join("berlin").display(),
            case.short(),
            dir.join("berlin").join(BUNDLE).display()
        ),
        None => "\nThe temporary folder was removed (run `custodia demo --keep` to keep it and look around).".into(),
    };
    // The views are `case show` documents: the demo's version follows theirs.
    out.record_version(
        crate::output::JSON_SCHEMA_VERSION_2,
        &text,
        serde_json::json!({"case": case.to_hex(), "steps": say.steps, "views": views, "kept": kept}),
    );
    Ok(ExitCode::SUCCESS)
}

/// Binds 127.0.0.1:0 to let the system pick a free UDP port.
fn free_port() -> anyhow::Result<u16> {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").context("finding a free UDP port")?;
    Ok(s.local_addr().context("finding a free UDP port")?.port())
}

/// Polls a node's store until `done` holds of the case, at most [`WAIT`].
async fn wait_for(
    node: &Node,
    case: &CaseId,
    what: &str,
    done: impl Fn(&Local, &CaseState) -> bool,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut l = node.open()?;
    loop {
        l.refresh()?;
        if l.store().state(case).is_some_and(|s| done(&l, s)) {
            return Ok(start.elapsed());
        }
        if start.elapsed() > WAIT {
            return Err(LocalError::Refused(format!(
                "{what}: nothing arrived at {} within {} s; replication between the demo nodes is not working on this machine (is UDP on 127.0.0.1 blocked?)",
                node.name,
                WAIT.as_secs()
            ))
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A few KiB of invented content: a chat export and a phone image.
fn write_evidence(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut chat =
        String::from("Chat export (generated for the Custodia demo; all content invented)\n");
    for i in 0..80u32 {
        chat.push_str(&format!(
            "[2026-03-{:02} {:02}:{:02}:{:02}] account_{}: {}\n",
            1 + i % 28,
            (i * 7) % 24,
            (i * 13) % 60,
            (i * 29) % 60,
            4000 + (i * 37) % 900,
            [
                "payment sent, ref 48213",
                "stream at nine",
                "new account ready",
                "moved to the other app",
                "confirm the transfer"
            ][(i % 5) as usize]
        ));
    }
    let chat_path = dir.join("chat-export.txt");
    std::fs::write(&chat_path, chat).with_context(|| format!("writing {}", chat_path.display()))?;
    let mut img = Vec::with_capacity(64 * 1024);
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while img.len() < 64 * 1024 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        img.extend_from_slice(&x.to_le_bytes());
    }
    let img_path = dir.join("seized-phone.img");
    std::fs::write(&img_path, img).with_context(|| format!("writing {}", img_path.display()))?;
    Ok((chat_path, img_path))
}

async fn scenario(
    root: &Path,
    kept: bool,
    say: &mut Narrator,
) -> anyhow::Result<(CaseId, serde_json::Value)> {
    // 1. Three nodes.
    say.step("Three agencies set up their own nodes on this machine. Each gets an Ed25519 identity key, a configuration and a store in its own directory, and listens on 127.0.0.1.");
    say.detail(&format!(
        "Under each step, the commands that do the same by hand (in {}):",
        root.display()
    ));
    let mut nodes = Vec::new();
    for (dir, name, country) in AGENCIES {
        let d = root.join(dir);
        let addr = format!("127.0.0.1:{}", free_port()?);
        say.command(&format!(
            "custodia --dir {dir} init --agency \"{name}\" --country {country} --listen {addr} --no-passphrase  # demo keys are not encrypted"
        ));
        let l = custodia_node::Local::init(&d, name, country, Some(&addr))?;
        say.detail(&format!(
            "{name} ({country})  fingerprint {}  {addr}  {}",
            l.me().fingerprint(),
            d.display()
        ));
        nodes.push(Node {
            name,
            country,
            dir: d,
            addr,
            agency: l.me(),
        });
    }
    let [manila, lyon, berlin] =
        <[Node; 3]>::try_from(nodes).map_err(|_| anyhow::anyhow!("three nodes were expected"))?;

    // 2. Peers and daemons.
    say.step("They pin each other's keys: Manila <-> Lyon and Lyon <-> Berlin. Manila and Berlin have no direct link: the Lyon liaison desk relays between them. Each node starts (QUIC, mutual TLS 1.3 pinned to those keys).");
    for (at, peer, short_name) in [
        (&manila, &lyon, "lyon"),
        (&lyon, &manila, "manila"),
        (&lyon, &berlin, "berlin"),
        (&berlin, &lyon, "lyon"),
    ] {
        say.command(&format!(
            "custodia --dir {} peer add {short_name} --addr {} --key {} --country {}",
            dir_name(at),
            peer.addr,
            peer.agency.to_hex(),
            peer.country
        ));
    }
    for n in [&manila, &lyon, &berlin] {
        say.command(&format!(
            "custodia --dir {} node run      # in a terminal of its own",
            dir_name(n)
        ));
    }
    let pin = |l: &mut Local, peer: &Node, short_name: &str| {
        l.add_peer(Peer {
            name: short_name.to_owned(),
            addr: peer.addr.clone(),
            key: peer.agency.to_hex(),
            country: peer.country.to_owned(),
        })
    };
    pin(&mut manila.open()?, &lyon, "lyon")?;
    {
        let mut l = lyon.open()?;
        pin(&mut l, &manila, "manila")?;
        pin(&mut l, &berlin, "berlin")?;
    }
    pin(&mut berlin.open()?, &lyon, "lyon")?;
    let mut running: Vec<Running> = Vec::new();
    for n in [&manila, &lyon, &berlin] {
        running.push(
            custodia_node::start(&n.dir)
                .await
                .with_context(|| format!("starting the {} node", n.name))?,
        );
    }
    let result = story(&manila, &lyon, &berlin, &running, kept, say).await;
    for r in running {
        r.shutdown().await;
    }
    result
}

/// The node's folder name inside the demo folder (`manila`).
fn dir_name(n: &Node) -> String {
    n.dir
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned())
}

async fn story(
    manila: &Node,
    lyon: &Node,
    berlin: &Node,
    running: &[Running],
    kept: bool,
    say: &mut Narrator,
) -> anyhow::Result<(CaseId, serde_json::Value)> {
    let mut m = manila.open()?;

    // 3. A case.
    say.step("Manila opens a case. The first entry (the genesis, position #0 of Manila's chain) is signed with Manila's key; its SHA-256 is the case id.");
    say.command("custodia --dir manila case open --title \"Operation Harbour Light\" --reference MCU-2026-0117 --jurisdiction PH --tlp amber");
    let genesis = m.open_case(
        "Operation Harbour Light",
        "MCU-2026-0117",
        Some("PH"),
        Tlp::Amber,
    )?;
    let case = genesis.id();
    say.detail(&format!(
        "Operation Harbour Light (MCU-2026-0117), TLP:AMBER\ncase id {case}"
    ));

    // 4. Sharing.
    say.step("Manila shares the case with Lyon as liaison and with Berlin as investigator: two signed member-added entries. (Manila knows Berlin only by the key the liaison desk passed on.)");
    say.command("custodia --dir manila case share MCU-2026-0117 --with lyon --role liaison");
    say.command(&format!(
        "custodia --dir manila case share MCU-2026-0117 --with {} --name \"{}\" --country {} --role investigator",
        berlin.agency.to_hex(),
        berlin.name,
        berlin.country
    ));
    m.share_agency(&case, &lyon.known(), Role::Liaison)?;
    m.share_agency(&case, &berlin.known(), Role::Investigator)?;

    // 5. Evidence.
    say.step("Manila registers two evidence files it seized (generated here). Each file is read once for its digests; only the digests, size, media type and description enter the case. The files never leave Manila's folder.");
    let (chat, img) = write_evidence(&manila.dir.join("evidence"))?;
    say.command("custodia --dir manila evidence add MCU-2026-0117 manila/evidence/seized-phone.img --exhibit EX-1 --description \"Seized phone, full physical image\" --authority \"Search warrant 2026-MNL-0311\" --method \"physical extraction\" --also md5,sha1");
    say.command("custodia --dir manila evidence add MCU-2026-0117 manila/evidence/chat-export.txt --exhibit EX-2 --description \"Chat export from the seized phone\"");
    let phone = m.register_evidence(
        &case,
        &custodia_node::evidence_files(std::slice::from_ref(&img))?,
        &EvidenceInfo {
            exhibit: Some("EX-1".into()),
            description: Some("Seized phone, full physical image".into()),
            authority: Some("Search warrant 2026-MNL-0311".into()),
            method: Some("physical extraction".into()),
            also: Wanted {
                sha1: true,
                md5: true,
            },
            ..EvidenceInfo::default()
        },
        &mut |_, _| {},
    )?;
    let export = m.register_evidence(
        &case,
        &custodia_node::evidence_files(std::slice::from_ref(&chat))?,
        &EvidenceInfo {
            exhibit: Some("EX-2".into()),
            description: Some("Chat export from the seized phone".into()),
            ..EvidenceInfo::default()
        },
        &mut |_, _| {},
    )?;
    let mut items = Vec::new();
    for r in phone.iter().chain(&export) {
        say.detail(&format!(
            "{}  {}  {} bytes  {}\n  sha256 {}  item {}",
            r.item.exhibit.as_deref().unwrap_or("-"),
            r.path.file_name().unwrap_or_default().to_string_lossy(),
            r.item.size,
            r.item.media_type,
            hex::encode(r.item.digests.sha256),
            r.item.item.to_uuid_string()
        ));
        items.push(r.item.item);
    }
    let [phone_item, chat_item] =
        <[_; 2]>::try_from(items).map_err(|_| anyhow::anyhow!("two items were expected"))?;

    // 6. Replication through Lyon.
    say.step("The nodes replicate. Berlin has no link to Manila, so everything must come through Lyon...");
    say.command("custodia --dir berlin case show MCU-2026-0117      # after a moment");
    let took = wait_for(berlin, &case, "the case reaching Berlin", |_, s| {
        s.items.len() == 2 && s.members.len() == 3
    })
    .await?;
    let berlin_peers = running[2].connected();
    let direct = berlin_peers.contains(&manila.agency);
    say.detail(&format!(
        "Berlin has the case, its three members and both items after {:.1} s. Berlin's only connection is to {}; {}\nLyon passed on Manila's entries as they were: each one is signed by Manila and chained to the one before, so a relay cannot alter, reorder or drop one unnoticed.",
        took.as_secs_f64(),
        if berlin_peers.contains(&lyon.agency) { "Lyon" } else { "no one right now" },
        if direct { "it also reached Manila directly." } else { "it never connected to Manila." }
    ));

    // 7. Transfer.
    say.step("Manila transfers custody of EX-1 (the phone image) to Berlin for examination. Until Berlin signs a receipt the item is in transit.");
    say.command(&format!(
        "custodia --dir manila custody transfer {} --to \"{}\" --purpose \"forensic examination\" --actor \"Insp. R. Santos\"",
        &phone_item.to_uuid_string()[..8],
        berlin.name
    ));
    let transfer = m.transfer(
        &phone_item.to_hex(),
        &berlin.agency.to_hex(),
        &custodia_node::CustodyInfo {
            purpose: Some("forensic examination".into()),
            actor: Some("Insp. R. Santos".into()),
            ..custodia_node::CustodyInfo::default()
        },
    )?;
    let tid = transfer.entry.id();
    say.detail(&format!("transfer {tid}"));

    // 8. Receipt.
    say.step("Berlin receives the transfer (through Lyon) and signs a receipt accepting it. The receipt references the transfer entry, so it can only be valid after it.");
    let took = wait_for(berlin, &case, "the transfer reaching Berlin", |_, s| {
        s.open_transfers.contains_key(&tid)
    })
    .await?;
    say.command(&format!(
        "custodia --dir berlin custody receive {} --actor \"KHK M. Weber\" --note \"seal intact on arrival\"",
        &phone_item.to_uuid_string()[..8]
    ));
    let mut b = berlin.open()?;
    let receipt = b.receive(
        &tid.to_hex(),
        None,
        &custodia_node::CustodyInfo {
            actor: Some("KHK M. Weber".into()),
            note: Some("seal intact on arrival".into()),
            ..custodia_node::CustodyInfo::default()
        },
    )?;
    say.detail(&format!(
        "the transfer reached Berlin after {:.1} s\nreceipt {}",
        took.as_secs_f64(),
        receipt.entry.id()
    ));

    // 9. Back to Manila.
    say.step("Manila waits for Berlin's receipt, relayed back by Lyon: it is Manila's proof of delivery.");
    say.command("custodia --dir manila case show MCU-2026-0117");
    let took = wait_for(manila, &case, "Berlin's receipt reaching Manila", |_, s| {
        s.items
            .get(&phone_item)
            .is_some_and(|i| i.holder == berlin.agency && i.open_transfer.is_none())
    })
    .await?;
    say.detail(&format!(
        "Manila sees Berlin as the holder of EX-1 after {:.1} s",
        took.as_secs_f64()
    ));

    // 10. The examiner's daily check.
    say.step("Manila re-checks its copy of the chat export against the record (`custodia evidence check`): same size, same SHA-256.");
    say.command(&format!(
        "custodia --dir manila evidence check {} manila/evidence/chat-export.txt",
        &chat_item.to_uuid_string()[..8]
    ));
    m.refresh()?;
    let check = m.check_evidence(&chat_item.to_hex(), &chat, &mut |_| {})?;
    say.detail(&format!(
        "{}: {}",
        chat.file_name().unwrap_or_default().to_string_lossy(),
        if check.matches() {
            "MATCH".to_owned()
        } else {
            format!("MISMATCH ({})", check.differs.join(", "))
        }
    ));
    if !check.matches() {
        return Err(LocalError::Refused("the generated evidence file changed".into()).into());
    }
    // Lyon relayed the receipt; make sure it holds it before showing its view.
    wait_for(lyon, &case, "the receipt reaching Lyon", |_, s| {
        s.items
            .get(&phone_item)
            .is_some_and(|i| i.holder == berlin.agency)
    })
    .await?;

    // 11. Each agency's view.
    say.step("The case as each agency's node sees it. Each view is derived from the signed entries alone, and they agree.");
    for n in [manila, lyon, berlin] {
        say.command(&format!(
            "custodia --dir {} case show MCU-2026-0117",
            dir_name(n)
        ));
    }
    let mut views = serde_json::Map::new();
    for n in [manila, lyon, berlin] {
        let l = n.open()?;
        let s = l
            .store()
            .state(&case)
            .cloned()
            .ok_or_else(|| LocalError::NotFound(format!("{} lacks the case", n.name)))?;
        let (text, json) = crate::case::show(&l, &s)?;
        say.detail(&format!("--- as {} sees it ---\n{text}\n", n.name));
        views.insert(n.name.to_owned(), json);
    }
    say.step(
        "The timeline as Berlin sees it (`custodia case log`): who said what, in causal order. A `witness` line is a node countersigning what it holds of the others' chains; `#4` after a name is a position in that agency's chain (the words are explained at the end).",
    );
    say.command("custodia --dir berlin case log MCU-2026-0117");
    let (log, _) = crate::case::log(&berlin.open()?, &case)?;
    say.detail(&log);

    say.step("Berlin exports the case as a court bundle (`custodia export`): one file with every signed entry, the agencies' keys and Berlin's signature. It is checked from the file alone (`custodia verify`), as a court would, with no node and no network.");
    say.command(&format!(
        "custodia --dir berlin export MCU-2026-0117 --out berlin/{BUNDLE}"
    ));
    say.command(&format!("custodia verify berlin/{BUNDLE}"));
    let file = berlin.dir.join(BUNDLE);
    let bytes = berlin.open()?.export_bundle(&case, &[])?;
    std::fs::write(&file, &bytes).map_err(|source| LocalError::Io {
        path: file.clone(),
        source,
    })?;
    let b = custodia_protocol::bundle::Bundle::decode(&bytes)
        .map_err(|e| LocalError::Refused(format!("the bundle just written: {e}")))?;
    let report = custodia_protocol::bundle::verify(&b, None);
    say.detail(&format!(
        "{} ({} bytes{})\n{}",
        file.display(),
        bytes.len(),
        if kept {
            ""
        } else {
            "; in the temporary folder, removed when the demo ends: `custodia demo --keep` keeps it"
        },
        report.verdict()
    ));
    if !report.is_valid() {
        return Err(LocalError::Refused("the demo's own bundle does not verify".into()).into());
    }

    tampered(&bytes, &report, berlin, say)?;

    say.step("Words used above.");
    say.detail(GLOSSARY);

    say.step("What this proved.");
    say.detail(
        "- Every statement is signed by the agency that made it: Berlin verified Manila's entries with Manila's key, though it never talked to Manila.\n\
         - Each agency's entries form a hash chain, and each entry references what its author had seen: Lyon could relay but not alter, reorder or silently drop anything.\n\
         - Custody moved only by the rules: the holder transferred, the addressee signed a receipt that references the transfer, and Manila holds that receipt as proof of delivery.\n\
         - The evidence files never left Manila: only their digests travelled, and anyone holding a file can check it against them.\n\
         - A copy of the court bundle changed by one letter was caught: the entry, the rule it breaks, and the exporter's broken signature.\n\
         A court can verify all of it offline, from the bundle alone: `custodia verify FILE --html report.html`.",
    );
    Ok((case, serde_json::Value::Object(views)))
}

/// Someone changes one letter of EX-1's description in a copy of the
/// bundle: the court's verifier names the entry and the rules broken.
fn tampered(
    bytes: &[u8],
    original: &custodia_protocol::bundle::Report,
    berlin: &Node,
    say: &mut Narrator,
) -> anyhow::Result<()> {
    say.step("Someone changes one letter in a copy of the bundle: EX-1's description \u{2018}Seized phone\u{2019} becomes \u{2018}Seized phony\u{2019}, a tampered copy. The court's check catches it.");
    let name = "case-tampered.custodia";
    say.command(&format!("custodia verify berlin/{name}      # exits 1"));
    let (from, to) = (b"Seized phone", b"Seized phony");
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .ok_or_else(|| LocalError::Refused("EX-1's description is not in the bundle".into()))?;
    let mut copy = bytes.to_vec();
    copy[at..at + to.len()].copy_from_slice(to);
    let file = berlin.dir.join(name);
    std::fs::write(&file, &copy).map_err(|source| LocalError::Io {
        path: file.clone(),
        source,
    })?;
    let b = custodia_protocol::bundle::Bundle::decode(&copy)
        .map_err(|e| LocalError::Refused(format!("the tampered copy: {e}")))?;
    let report = custodia_protocol::bundle::verify(&b, None);
    if report.is_valid() {
        return Err(LocalError::Refused("a tampered bundle verified as valid".into()).into());
    }
    let mut text = report.verdict();
    for p in report.problems.iter().filter(|p| !p.is_consequence()) {
        // The entry in words an investigator knows: what it was in the
        // untouched bundle (the changed copy no longer establishes it).
        let what = p
            .index
            .and_then(|i| {
                original.items.iter().find_map(|item| {
                    item.timeline.iter().find(|e| e.index == Some(i)).map(|e| {
                        let what = match e.action.as_str() {
                            "registered" => "registration".to_owned(),
                            a => format!("{a} event"),
                        };
                        format!(
                            ", the {what} of {}",
                            item.exhibit.as_deref().unwrap_or("an item")
                        )
                    })
                })
            })
            .unwrap_or_default();
        text.push_str(&format!(
            "\n{} {} {}{}{}: {}",
            crate::report::explain::at(p.index),
            p.rule,
            p.class,
            p.seq.map_or_else(String::new, |s| format!(
                " (position #{s} of {}{what})",
                p.author_name.as_deref().unwrap_or("its author")
            )),
            if p.consequences > 0 {
                format!(
                    "; {} later entries depend on it and fail with it",
                    p.consequences
                )
            } else {
                String::new()
            },
            p.sentence
        ));
    }
    say.detail(&text);
    Ok(())
}
