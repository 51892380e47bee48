//! A panic in model code fails the requests of that step and the engine carries on; a
//! panic elsewhere on the engine thread ends it, and the handle says so.

mod harness;

use harness::*;
use looptree_engine::testing::{FakeDetokenizer, FakeModel};
use looptree_engine::{
    Batch, Engine, EngineHandle, Event, KvPool, Model, ModelConfig, RequestError,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The fake model, except that a batch with a prompt starting with `POISON` panics
/// mid-forward (generated tokens never sit at position 0).
struct Panicky(FakeModel);

const POISON: u32 = 13;

impl Model for Panicky {
    fn config(&self) -> &ModelConfig {
        self.0.config()
    }
    fn device(&self) -> &candle_core::Device {
        self.0.device()
    }
    fn forward(&self, batch: &Batch, kv: &mut KvPool) -> candle_core::Result<candle_core::Tensor> {
        let poisoned = batch
            .tokens
            .iter()
            .zip(&batch.positions)
            .any(|(&t, &p)| t == POISON && p == 0);
        assert!(!poisoned, "poisoned batch");
        self.0.forward(batch, kv)
    }
}

fn panicky_engine() -> Engine {
    let model = Arc::new(Panicky(FakeModel::new(VOCAB, MAX_CTX)));
    Engine::new(model, Arc::new(FakeDetokenizer), config(4096, 1)).unwrap()
}

#[test]
fn a_panic_in_model_code_fails_its_step_and_the_engine_goes_on() {
    let mut e = panicky_engine();
    let good = prompt(3, 10);
    let params = greedy(8);
    // A clean request first, so the tree holds something the failure must not disturb.
    let (_, first) = submit(&mut e, &good, params.clone());
    run(&mut e, 100);
    assert!(outcome(&first).all_finished(1));
    let mut bad = vec![POISON];
    bad.extend(&good);
    let (_, failed) = submit(&mut e, &bad, params.clone());
    run(&mut e, 100);
    let o = outcome(&failed);
    let message = o.failed.expect("the poisoned request failed");
    assert!(
        message.contains("panicked") && message.contains("poisoned batch"),
        "{message}"
    );
    assert_clean(&e);
    // The engine still serves, and the cached prefix is intact.
    let (_, again) = submit(&mut e, &good, params.clone());
    run(&mut e, 100);
    let o = outcome(&again);
    assert_eq!(o.fork(0), reference(&good, &params));
    assert_eq!(
        o.prefilled.unwrap().1,
        good.len() - 1,
        "served from the cache"
    );
    assert_clean(&e);
}

#[test]
fn the_handle_tells_when_the_engine_thread_has_died() {
    let h = EngineHandle::spawn(engine(config(4096, 1)).0);
    assert!(h.is_running());
    // A listener that panics runs on the engine thread: it takes the thread down.
    let sink = |ev: Event| -> bool {
        if matches!(ev, Event::Token { .. }) {
            panic!("listener bug");
        }
        true
    };
    h.submit(req(&prompt(4, 6), greedy(4)), Box::new(sink))
        .unwrap();
    let start = Instant::now();
    while h.is_running() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the thread should have ended"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (tx, _rx) = std::sync::mpsc::channel();
    assert_eq!(
        h.submit(req(&prompt(5, 6), greedy(4)), Box::new(tx)),
        Err(RequestError::EngineStopped)
    );
}
