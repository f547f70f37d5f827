//! A gateway a team shares, with a named token per person: each sees and
//! touches only their own prompts, history, outputs and editor files; a
//! revoked token is refused at once and its socket closed; people's prompts
//! are taken in turns (fair share), and one person's waiting prompts can be
//! capped.

use crate::dispatch_fleet;
use crate::gateway_support;
use crate::support;

use dispatch_fleet::{attached, fast_options, Fleet};
use futures_util::StreamExt;
use gateway_support::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use storycore_core::gateway::{Access, Gateway, TokenBook};
use storycore_types::JobState;
use support::standin::StandIn;
use support::wait_for;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// A person's client of the gateway: every request with their token.
struct Person {
    token: String,
    base: String,
    http: reqwest::Client,
}

impl Person {
    async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn prompt(&self, prefix: &str, color: u32) -> String {
        let (st, r) = self
            .post(
                "/prompt",
                &json!({"prompt": workflow(prefix, color), "client_id": prefix}),
            )
            .await;
        assert_eq!(st, 200, "{r}");
        r["prompt_id"].as_str().unwrap().to_string()
    }

    async fn socket(&self, client: &str) -> Socket {
        let url = format!(
            "{}/ws?clientId={client}",
            self.base.replacen("http://", "ws://", 1)
        );
        let mut req = url.into_client_request().unwrap();
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {}", self.token).parse().unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.unwrap().0
    }
}

/// The prompt ids in a `/queue` answer: (running, pending).
fn queue_ids(q: &Value) -> (Vec<String>, Vec<String>) {
    let ids = |k: &str| {
        q[k].as_array()
            .unwrap()
            .iter()
            .map(|e| e[1].as_str().unwrap().to_string())
            .collect()
    };
    (ids("queue_running"), ids("queue_pending"))
}

/// A gateway on the network (plain HTTP chosen, so tokens are required)
/// over `fleet`, with the named tokens of `book`.
async fn team_gateway(fleet: &Fleet, book: Arc<TokenBook>, max_waiting: Option<u32>) -> Gateway {
    let access = Access::open()
        .with_tokens(book)
        .with_max_waiting(max_waiting)
        .with_plain_http();
    Gateway::start_with(
        fleet.queue.clone(),
        fleet.manager.clone(),
        "0.0.0.0:0".parse().unwrap(),
        access,
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_person_sees_and_touches_only_their_own_prompts() {
    let s = StandIn::builder().env("STANDIN_NODE_MS", "700").start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let book = TokenBook::open(fleet.dir.path());
    let tokens: Vec<String> = [("alice", false), ("bob", false), ("ops", true)]
        .iter()
        .map(|(n, admin)| book.create(n, *admin).unwrap())
        .collect();
    let gw = team_gateway(&fleet, book.clone(), None).await;
    let base = format!("http://127.0.0.1:{}", gw.addr().port());
    let person = |i: usize| Person {
        token: tokens[i].clone(),
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let (alice, bob, ops) = (person(0), person(1), person(2));
    let nobody = reqwest::Client::new()
        .get(format!("{base}/queue"))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 401, "on the network, no token no queue");
    // An address that keeps failing is answered more and more slowly
    // (Retry-After says so); the log never holds what was sent.
    let mut slowed = None;
    for n in 1..=7 {
        let r = reqwest::Client::new()
            .get(format!("{base}/queue"))
            .bearer_auth(format!("sct_guess{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        if let Some(after) = r.headers().get("retry-after") {
            slowed.get_or_insert((n, after.to_str().unwrap().to_string()));
        }
    }
    println!("people: failures from one address slowed from failure {slowed:?}");
    // The request without a token above was the first failure: the sixth
    // in a row is the first slowed.
    assert_eq!(slowed.map(|s| s.0), Some(5), "the sixth in a row slowed");

    let mut alice_ws = alice.socket("alice").await;
    next(&mut alice_ws).await;
    let a1 = alice.prompt("alice", 1).await;
    let a2 = alice.prompt("alice", 2).await;
    let b1 = bob.prompt("bob", 3).await;
    wait_for(
        Duration::from_secs(20),
        "alice's first prompt running",
        || async {
            let (_, q) = alice.get("/queue").await;
            queue_ids(&q).0.contains(&a1).then_some(())
        },
    )
    .await;

    let (_, qa) = alice.get("/queue").await;
    let (_, qb) = bob.get("/queue").await;
    let (_, qo) = ops.get("/queue").await;
    let (ra, pa) = queue_ids(&qa);
    let (rb, pb) = queue_ids(&qb);
    let (ro, po) = queue_ids(&qo);
    println!("people: alice sees {ra:?} {pa:?}; bob {rb:?} {pb:?}; ops {ro:?} {po:?}");
    let all_a: Vec<&String> = ra.iter().chain(&pa).collect();
    let all_b: Vec<&String> = rb.iter().chain(&pb).collect();
    assert!(all_a.contains(&&a1) && all_a.contains(&&a2) && !all_a.contains(&&b1));
    assert_eq!(all_b, [&b1], "bob sees his own only");
    assert_eq!(ro.len() + po.len(), 3, "the admin sees all three");
    let (_, remaining) = bob.get("/prompt").await;
    assert_eq!(remaining["exec_info"]["queue_remaining"], 1);

    // Bob clears and interrupts: only his own prompts go.
    assert_eq!(bob.post("/queue", &json!({"clear": true})).await.0, 200);
    assert_eq!(bob.post("/queue", &json!({"delete": [a2]})).await.0, 200);
    assert_eq!(bob.post("/interrupt", &json!({})).await.0, 200);
    assert_eq!(
        bob.post("/interrupt", &json!({"prompt_id": a1})).await.0,
        200
    );
    let (_, qb) = bob.get("/queue").await;
    assert_eq!(queue_ids(&qb), (vec![], vec![]), "bob's prompt is gone");
    // Alice's prompts run on, to their images.
    let frames = until_done(&mut alice_ws, &a1).await;
    assert!(
        types(&frames).contains(&"execution_success".to_string()),
        "{:?}",
        types(&frames)
    );
    let done = fleet
        .wait_state(
            &fleet
                .queue
                .list()
                .into_iter()
                .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == a2))
                .unwrap()
                .id,
            JobState::Succeeded,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(done.gateway.unwrap().owner.as_deref(), Some("alice"));

    // History and outputs are their owner's.
    let (_, ha) = alice.get(&format!("/history/{a1}")).await;
    let image = ha[&a1]["outputs"]["2"]["images"][0].clone();
    assert_eq!(ha[&a1]["status"]["status_str"], "success");
    let (_, hb) = bob.get(&format!("/history/{a1}")).await;
    assert_eq!(hb, json!({}), "bob does not see alice's history");
    let (_, all_b) = bob.get("/history").await;
    assert!(all_b.get(&a1).is_none() && all_b.get(&a2).is_none());
    let view = |p: &Person| {
        let url = format!("{}/view", p.base);
        let (token, http, image) = (p.token.clone(), p.http.clone(), image.clone());
        async move {
            http.get(url)
                .bearer_auth(token)
                .query(&[
                    ("filename", image["filename"].as_str().unwrap()),
                    ("subfolder", image["subfolder"].as_str().unwrap()),
                    ("type", "output"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        (view(&alice).await, view(&bob).await, view(&ops).await),
        (200, 404, 200)
    );
    // Bob cannot clear alice's history either.
    bob.post("/history", &json!({"clear": true})).await;
    assert_eq!(
        alice.get(&format!("/history/{a1}")).await.1[&a1]["status"]["status_str"],
        "success"
    );

    // Each person's editor settings are their own.
    assert_eq!(
        alice.post("/settings/Comfy.Locale", &json!("fr")).await.0,
        200
    );
    assert_eq!(alice.get("/settings/Comfy.Locale").await.1, json!("fr"));
    assert_eq!(bob.get("/settings/Comfy.Locale").await.1, Value::Null);

    // Revoked: refused at once, and the open socket closed.
    let mut bob_ws = bob.socket("bob").await;
    next(&mut bob_ws).await;
    book.revoke("bob").unwrap();
    assert_eq!(bob.get("/queue").await.0, 401, "refused at once");
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the revoked token's socket closed");
    println!("people: bob's socket closed with {closed:?} after his token was revoked");
    assert_eq!(closed, Some(1008));
    assert_eq!(alice.get("/queue").await.0, 200, "alice is still in");
    gw.stop().await;
    fleet.queue.shutdown().await;
}

/// 200 prompts of one person, then one of another: the second person's
/// starts within one slot (it takes its turn); without tokens the order
/// is as before (submission order, every prompt alike).
#[tokio::test(flavor = "multi_thread")]
async fn a_single_prompt_does_not_wait_behind_anothers_two_hundred() {
    let (with_people, _) = burst(true).await;
    let (without, after) = burst(false).await;
    println!(
        "fair share: the single prompt started after {with_people} of the 200 prompts submitted before it with named tokens; without them after {without} (and before {after})"
    );
    assert!(with_people <= 2, "within one slot: {with_people}");
    assert!(without > 2, "there was a backlog to wait behind: {without}");
    assert_eq!(after, 0, "without tokens, submission order as before");
}

/// Prompts of the first person that started after the second person's one
/// prompt was submitted and before it started, and those that started
/// after it.
async fn burst(people: bool) -> (usize, usize) {
    let s = StandIn::builder().env("STANDIN_NODE_MS", "5").start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    fleet.start("gpu0").await;
    let book = TokenBook::open(fleet.dir.path());
    let (ta, tb) = if people {
        (
            book.create("script", false).unwrap(),
            book.create("carol", false).unwrap(),
        )
    } else {
        // One admin token for both: nobody is told apart, as without tokens.
        let t = book.create("everyone", true).unwrap();
        (t.clone(), t)
    };
    let gw = team_gateway(&fleet, book.clone(), None).await;
    let base = format!("http://127.0.0.1:{}", gw.addr().port());
    let shared = |token: String| Person {
        token,
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let (a, b) = (shared(ta), shared(tb));
    for i in 0..200 {
        a.prompt("a", i).await;
    }
    let single = b.prompt("b", 999).await;
    let job_of = |prompt: &str| {
        fleet
            .queue
            .list()
            .into_iter()
            .find(|j| j.gateway.as_ref().is_some_and(|g| g.prompt_id == prompt))
            .unwrap()
    };
    let id = job_of(&single).id;
    let mine = fleet
        .wait_state(&id, JobState::Succeeded, Duration::from_secs(120))
        .await;
    let (submitted, started) = (mine.created_at, mine.started_at.unwrap());
    let ids: Vec<String> = fleet.queue.list().into_iter().map(|j| j.id).collect();
    let all = fleet.wait_all_final(&ids, Duration::from_secs(120)).await;
    let others = || {
        all.iter()
            .filter(|j| j.id != id)
            .filter_map(|j| j.started_at)
    };
    let ahead = others().filter(|t| *t > submitted && *t < started).count();
    let after = others().filter(|t| *t > started).count();
    gw.stop().await;
    fleet.queue.shutdown().await;
    (ahead, after)
}

/// With a cap per person, a prompt over it gets ComfyUI's error shape with
/// a sentence; another person is not held by it.
#[tokio::test(flavor = "multi_thread")]
async fn a_person_over_the_cap_is_told_so() {
    // The instance is not started: every prompt waits.
    let s = StandIn::start();
    let fleet = Fleet::open(vec![attached("gpu0", s.port(), 1)], fast_options()).await;
    let book = TokenBook::open(fleet.dir.path());
    let (td, te) = (
        book.create("dave", false).unwrap(),
        book.create("erin", false).unwrap(),
    );
    let gw = team_gateway(&fleet, book.clone(), Some(3)).await;
    let base = format!("http://127.0.0.1:{}", gw.addr().port());
    let person = |token: String| Person {
        token,
        base: base.clone(),
        http: reqwest::Client::new(),
    };
    let (dave, erin) = (person(td), person(te));
    for i in 0..3 {
        dave.prompt("dave", i).await;
    }
    let (st, refused) = dave
        .post("/prompt", &json!({"prompt": workflow("dave", 9)}))
        .await;
    println!("cap: {st} {refused}");
    assert_eq!(st, 400);
    assert_eq!(refused["error"]["type"], "prompt_rejected");
    let said = refused["error"]["message"].as_str().unwrap();
    assert!(said.contains("dave has 3 prompts waiting"), "{said}");
    assert_eq!(refused["node_errors"], json!({}));
    erin.prompt("erin", 1).await;
    gw.stop().await;
    fleet.queue.shutdown().await;
}
