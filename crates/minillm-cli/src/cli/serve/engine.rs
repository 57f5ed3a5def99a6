//! Continuous batching: one thread owns the model and a KV cache with a slot per concurrent
//! request. Each step it admits waiting requests into free slots (prefill), draws one token for
//! every active request, sends it, and runs one batched decode step for all of them. A request
//! joins and leaves between steps; one whose client went away (its receiver dropped) is freed at
//! its next token. Nothing is locked across a generation: handlers only send requests and read
//! their own channel.

use super::metrics::Metrics;
use minillm::constrain::Constraint;
use minillm::model::Gpt;
use minillm::model::kv_cache::KvCache;
use minillm::rng::Rng;
use minillm::sample::{Continuing, SamplerConfig, decode_step, sample};
use rayon::prelude::*;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedSender;

/// One generation to run.
pub struct Job {
    pub prompt: Vec<u32>,
    /// Already capped so that prompt + new tokens fit the context.
    pub max_new: usize,
    pub sampler: SamplerConfig,
    pub seed: u64,
    /// Whether to compute each token's log-probability (with `top_logprobs` alternatives).
    pub logprobs: bool,
    pub top_logprobs: usize,
    /// What the output must be (a JSON schema, say): tokens that would break it are never drawn.
    pub constraint: Option<Constraint>,
    pub events: UnboundedSender<Event>,
    /// When the request reached the server, for the time to its first token.
    pub submitted: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (end token).
    Stop,
    /// The token budget ran out.
    Length,
}

pub enum Event {
    Token { id: u32, logprob: f32, top: Vec<(u32, f32)> },
    Done(Finish),
    Failed(String),
}

/// A short piece of work that needs the model itself (the lab's forward passes with attention
/// maps): run on the engine thread between two decode steps, so the model is never shared.
pub type Look = Box<dyn FnOnce(&mut Gpt) + Send>;

enum Work {
    Generate(Job),
    Look(Look),
}

/// The handle the HTTP handlers share.
pub struct Engine {
    jobs: mpsc::Sender<Work>,
    in_flight: Arc<AtomicUsize>,
    /// Requests decoding together plus those waiting for a slot; more are refused (429).
    limit: usize,
}

struct Active {
    job: Job,
    ids: Vec<u32>,
    logits: Vec<f32>,
    /// The model's own logits, kept before a constraint masks them, for the log-probabilities
    /// reported (what the model believed, as without a constraint).
    unmasked: Vec<f32>,
    /// When the last token was sent (none yet: the first is timed from submission).
    last_token: Option<Instant>,
    rng: Rng,
    made: usize,
}

impl Engine {
    /// Starts the engine thread with `slots` requests decoded together; as many again may wait.
    pub fn start(model: Gpt, end: Vec<u32>, slots: usize, metrics: Arc<Metrics>) -> Engine {
        let (jobs, rx) = mpsc::channel::<Work>();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let done = in_flight.clone();
        // The loop runs on a worker of a pool of its own, so each step's parallel products are
        // handed between workers that are awake, not injected from outside and waited for (that
        // cost the demo model half its speed); the handlers' own parallel work (tokenizing long
        // prompts) uses the global pool and cannot wait behind a blocked engine.
        let threads = rayon::current_num_threads();
        std::thread::Builder::new()
            .name("minillm-engine".into())
            .spawn(move || {
                let go = move || run(model, end, slots, rx, done, metrics);
                match rayon::ThreadPoolBuilder::new().num_threads(threads).build() {
                    Ok(pool) => pool.install(go),
                    Err(_) => go(),
                }
            })
            .expect("the engine thread starts");
        Engine { jobs, in_flight, limit: 2 * slots }
    }

    /// Queues `job`, or gives it back (boxed: it is large) when the server is at capacity.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.limit {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(Box::new(job));
        }
        self.jobs.send(Work::Generate(job)).map_err(|e| {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            match e.0 {
                Work::Generate(job) => Box::new(job),
                Work::Look(_) => unreachable!("a generation was sent"),
            }
        })
    }

    /// Runs `f` on the model between two decode steps and returns its result.
    pub async fn look<R: Send + 'static>(&self, f: impl FnOnce(&mut Gpt) -> R + Send + 'static) -> Option<R> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let work: Look = Box::new(move |model| {
            let _ = tx.send(f(model));
        });
        self.jobs.send(Work::Look(work)).ok()?;
        rx.await.ok()
    }
}

/// Prefills the admitted jobs' prompts into their slots, together (one pass over the weights
/// for all the short prompts, instead of one each). If that is refused, each prompt is
/// prefilled alone, so that a bad prompt fails only its own request.
fn prefill(
    model: &Gpt,
    cache: &mut KvCache,
    admitted: Vec<(usize, Job)>,
) -> Vec<(usize, Job, minillm::error::Result<Vec<f32>>)> {
    let together = {
        let prompts: Vec<(usize, &[u32])> =
            admitted.iter().map(|(slot, job)| (*slot, &job.prompt[..])).collect();
        model.prefill_batch(cache, &prompts)
    };
    match together {
        Ok(logits) => admitted.into_iter().zip(logits).map(|((slot, job), l)| (slot, job, Ok(l))).collect(),
        Err(_) => admitted
            .into_iter()
            .map(|(slot, job)| {
                cache.clear(slot);
                let alone = model.prefill(cache, slot, &job.prompt);
                (slot, job, alone)
            })
            .collect(),
    }
}

fn run(
    mut model: Gpt,
    end: Vec<u32>,
    slots: usize,
    rx: mpsc::Receiver<Work>,
    in_flight: Arc<AtomicUsize>,
    metrics: Arc<Metrics>,
) {
    let mut cache = KvCache::new(&model, slots);
    let mut active: Vec<Option<Active>> = (0..slots).map(|_| None).collect();
    let mut waiting: VecDeque<Job> = VecDeque::new();
    // Frees a decoding slot, then tells its client the `last` event: the slot counts as free in
    // /metrics before the client can hear that its request ended.
    let finish = |slot: &mut Option<Active>, last: Option<Event>| {
        if let Some(a) = slot.take() {
            metrics.decoding.fetch_sub(1, Ordering::Relaxed);
            if let Some(event) = last {
                let _ = a.job.events.send(event);
            }
        }
        in_flight.fetch_sub(1, Ordering::SeqCst);
    };
    let publish = |waiting: &VecDeque<Job>, active: &[Option<Active>]| {
        metrics.waiting.store(waiting.len() as u64, Ordering::Relaxed);
        metrics.decoding.store(active.iter().flatten().count() as u64, Ordering::Relaxed);
    };
    loop {
        // Block only when there is nothing to do.
        if active.iter().all(Option::is_none) && waiting.is_empty() {
            publish(&waiting, &active);
            match rx.recv() {
                Ok(Work::Generate(job)) => waiting.push_back(job),
                Ok(Work::Look(f)) => f(&mut model),
                Err(_) => return, // the server is gone
            }
        }
        for work in rx.try_iter() {
            match work {
                Work::Generate(job) => waiting.push_back(job),
                Work::Look(f) => f(&mut model),
            }
        }
        // Admit waiting jobs into free slots, their prompts prefilled together.
        let mut admitted = Vec::new();
        for (slot, entry) in active.iter().enumerate() {
            if entry.is_some() {
                continue;
            }
            let Some(job) = waiting.pop_front() else { break };
            if job.events.is_closed() {
                in_flight.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            cache.clear(slot);
            admitted.push((slot, job));
        }
        for (slot, job, prefilled) in prefill(&model, &mut cache, admitted) {
            match prefilled {
                Ok(logits) => {
                    metrics.prompt_tokens.fetch_add(job.prompt.len() as u64, Ordering::Relaxed);
                    let rng = Rng::new(job.seed);
                    active[slot] = Some(Active {
                        ids: job.prompt.clone(),
                        logits,
                        unmasked: Vec::new(),
                        last_token: None,
                        rng,
                        made: 0,
                        job,
                    });
                }
                Err(e) => {
                    let _ = job.events.send(Event::Failed(e.to_string()));
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        publish(&waiting, &active);
        // One token for every active request: drawn in parallel (each request has its own
        // generator, so the order cannot change an answer), then sent in slot order.
        let picks: Vec<Option<Event>> = active
            .par_iter_mut()
            .map(|entry| {
                let a = entry.as_mut()?;
                let masked = a.job.constraint.is_some();
                if let Some(constraint) = &mut a.job.constraint {
                    if a.job.logprobs {
                        a.unmasked.clone_from(&a.logits);
                    }
                    if let Err(e) = constraint.restrict(&mut a.logits) {
                        return Some(Event::Failed(e.to_string()));
                    }
                }
                let id = sample(&a.logits, &a.ids, &a.job.sampler, &mut a.rng);
                if let Some(Err(e)) =
                    a.job.constraint.as_mut().filter(|_| !end.contains(&id)).map(|c| c.accept(id))
                {
                    return Some(Event::Failed(e.to_string()));
                }
                let (logprob, top) = if a.job.logprobs {
                    let model_logits = if masked { &a.unmasked } else { &a.logits };
                    minillm::sample::logprob_and_top(model_logits, id, a.job.top_logprobs)
                } else {
                    (0.0, Vec::new())
                };
                Some(Event::Token { id, logprob, top })
            })
            .collect();
        let mut continuing = vec![false; slots];
        for (slot, (entry, pick)) in active.iter_mut().zip(picks).enumerate() {
            let (Some(a), Some(token)) = (entry.as_mut(), pick) else { continue };
            let Event::Token { id, .. } = token else {
                finish(entry, Some(token)); // the constraint failed
                continue;
            };
            if end.contains(&id) {
                finish(entry, Some(Event::Done(Finish::Stop)));
                continue;
            }
            if a.job.events.send(token).is_err() {
                finish(entry, None); // the client went away: free the slot now
                continue;
            }
            let now = Instant::now();
            match a.last_token.replace(now) {
                None => metrics.time_to_first_token.observe(now - a.job.submitted),
                Some(last) => metrics.time_per_token.observe(now - last),
            }
            metrics.generated_tokens.fetch_add(1, Ordering::Relaxed);
            a.ids.push(id);
            a.made += 1;
            if a.made >= a.job.max_new {
                finish(entry, Some(Event::Done(Finish::Length)));
                continue;
            }
            continuing[slot] = true;
        }
        let mut step: Vec<Continuing> = (active.iter_mut().enumerate())
            .filter(|(slot, _)| continuing[*slot])
            .filter_map(|(slot, entry)| {
                entry.as_mut().map(|a| Continuing { slot, ids: &a.ids, logits: &mut a.logits })
            })
            .collect();
        if step.is_empty() {
            continue;
        }
        if let Err(e) = decode_step(&model, &mut cache, &mut step) {
            drop(step);
            for (entry, _) in active.iter_mut().zip(&continuing).filter(|(_, go_on)| **go_on) {
                finish(entry, Some(Event::Failed(e.to_string())));
            }
        }
    }
}

/// log softmax(logits)[id], and the `k` most likely tokens with theirs.
#[cfg(test)]
mod tests {
    use super::*;
    use minillm::model::ModelConfig;
    use std::time::Duration;

    /// A job that cannot finish by itself during the test: no end token, no budget, and a context
    /// far longer than the test could decode.
    fn endless(events: UnboundedSender<Event>) -> Job {
        let sampler = SamplerConfig { temperature: 0.0, ..Default::default() };
        Job {
            prompt: vec![1, 2, 3],
            max_new: usize::MAX,
            sampler,
            seed: 0,
            logprobs: false,
            top_logprobs: 0,
            constraint: None,
            events,
            submitted: Instant::now(),
        }
    }

    fn submit_within(engine: &Engine, mut job: Job, limit: Duration) -> bool {
        let start = Instant::now();
        loop {
            match engine.submit(job) {
                Ok(()) => return true,
                Err(j) if start.elapsed() < limit => {
                    job = *j;
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return false,
            }
        }
    }

    #[test]
    fn capacity_is_refused_and_a_dropped_client_frees_its_slot_at_once() {
        let config = ModelConfig {
            n_layer: 1,
            n_head: 1,
            n_embd: 16,
            block_size: 100_000,
            vocab_size: 32,
            dropout: 0.0,
            bias: true,
            arch: Default::default(),
        };
        let engine = Engine::start(Gpt::new(config, 1).unwrap(), Vec::new(), 1, Default::default()); // 1 decoding, 1 waiting
        let (a_tx, mut a) = tokio::sync::mpsc::unbounded_channel();
        let (b_tx, b) = tokio::sync::mpsc::unbounded_channel();
        assert!(engine.submit(endless(a_tx)).is_ok());
        assert!(engine.submit(endless(b_tx)).is_ok());
        // A is decoding (its tokens arrive), B waits: a third is over capacity.
        assert!(matches!(a.blocking_recv(), Some(Event::Token { .. })));
        let (c_tx, mut c) = tokio::sync::mpsc::unbounded_channel();
        let c_job = endless(c_tx);
        let c_job = engine.submit(c_job).expect_err("a third request is over capacity");
        // A's client goes away: its slot goes to B at once, which makes room for C.
        drop(a);
        assert!(
            submit_within(&engine, *c_job, Duration::from_secs(2)),
            "the dropped request's slot was not freed"
        );
        drop(b);
        assert!(matches!(c.blocking_recv(), Some(Event::Token { .. })), "C never started");
    }
}
