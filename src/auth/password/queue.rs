//! The hashing queue: bounded, with a lane per kind of work and, within a lane, the
//! requesters served in turn (see the module above for why).

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Condvar, Mutex},
};

use argon2::Block;

use crate::{auth::network::Network, db::ids::UserId};

/// A job for a hashing thread, given that thread's working memory.
pub(super) type Job = Box<dyn FnOnce(&mut Vec<Block>) + Send>;

/// The kind of work a hash is for; each has its own lane in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Signin = 0,
    Signup = 1,
    /// Password changes, and later verifications of an account's own secrets.
    Account = 2,
}

const LANES: usize = 3;

/// Who asked for a hash, for fairness within a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Requester {
    Network(Network),
    Account(UserId),
    Unknown,
}

/// A place in the queue: the lane and the requester.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    pub lane: Lane,
    pub requester: Requester,
}

impl Ticket {
    pub fn new(lane: Lane, network: Option<Network>) -> Self {
        Self { lane, requester: network.map_or(Requester::Unknown, Requester::Network) }
    }
}

/// One lane: requesters served in turn, each with its jobs in order.
#[derive(Default)]
struct LaneQueue {
    turn: VecDeque<Requester>,
    jobs: HashMap<Requester, VecDeque<Job>>,
    queued: usize,
}

impl LaneQueue {
    fn push(&mut self, requester: Requester, job: Job) {
        let jobs = self.jobs.entry(requester).or_default();
        if jobs.is_empty() {
            self.turn.push_back(requester);
        }
        jobs.push_back(job);
        self.queued += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        let requester = self.turn.pop_front()?;
        let jobs = self.jobs.get_mut(&requester)?;
        let job = jobs.pop_front();
        self.queued -= usize::from(job.is_some());
        if jobs.is_empty() {
            self.jobs.remove(&requester);
        } else {
            self.turn.push_back(requester);
        }
        job
    }

    fn queued_by(&self, requester: &Requester) -> usize {
        self.jobs.get(requester).map_or(0, VecDeque::len)
    }
}

#[derive(Default)]
struct Queue {
    lanes: [LaneQueue; LANES],
    /// The lane to look at first next time.
    next_lane: usize,
    closed: bool,
}

impl Queue {
    /// Jobs waiting, in every lane.
    fn queued(&self) -> usize {
        self.lanes.iter().map(|lane| lane.queued).sum()
    }

    fn pop(&mut self) -> Option<Job> {
        for i in 0..LANES {
            let lane = (self.next_lane + i) % LANES;
            if let Some(job) = self.lanes[lane].pop() {
                self.next_lane = (lane + 1) % LANES;
                return Some(job);
            }
        }
        None
    }
}

/// The queue and the signal for the hashing threads.
#[derive(Default)]
pub(super) struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A job refused because its lane, its requester's share or the whole queue is full.
pub(super) struct Full {
    /// Jobs waiting when it was refused.
    pub waiting: usize,
}

impl Shared {
    /// Queues `job` unless the queue (`limit` jobs), its lane (half of that) or the
    /// requester's share of the lane (half of a lane) is full.
    pub(super) fn push(&self, ticket: Ticket, job: Job, limit: usize) -> Result<(), Full> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let lane = &queue.lanes[ticket.lane as usize];
        let lane_limit = (limit / 2).max(1);
        let share = (lane_limit / 2).max(1);
        if queue.queued() >= limit || lane.queued >= lane_limit || lane.queued_by(&ticket.requester) >= share {
            return Err(Full { waiting: queue.queued() });
        }
        queue.lanes[ticket.lane as usize].push(ticket.requester, job);
        self.ready.notify_one();
        Ok(())
    }

    /// Jobs waiting, in every lane.
    pub(super) fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).queued()
    }

    /// Waits for the next job; `None` once the hasher is gone and the queue is empty.
    pub(super) fn next_job(&self) -> Option<Job> {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(job) = queue.pop() {
                return Some(job);
            }
            if queue.closed {
                return None;
            }
            queue = self.ready.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// Held only by the `PasswordHasher` clones: when the last one goes, the threads end.
pub(super) struct Handle(pub Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.0.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn marker(id: u32, log: Arc<Mutex<Vec<u32>>>) -> Job {
        Box::new(move |_| log.lock().unwrap().push(id))
    }

    #[test]
    fn a_signin_behind_a_signup_storm_is_taken_next() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut queue = Queue::default();
        for i in 0..200 {
            let requester =
                Requester::Network(Network::of(IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]), 64));
            queue.lanes[Lane::Signup as usize].push(requester, marker(i, log.clone()));
        }
        queue.lanes[Lane::Signin as usize].push(Requester::Unknown, marker(1000, log.clone()));
        assert_eq!(queue.queued(), 201);
        let mut memory = Vec::new();
        for _ in 0..2 {
            queue.pop().unwrap()(&mut memory);
        }
        assert!(log.lock().unwrap().contains(&1000), "{:?}", log.lock().unwrap());
    }

    #[test]
    fn requesters_in_a_lane_take_turns() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut lane = LaneQueue::default();
        let (a, b) = (
            Requester::Network(Network::of(IpAddr::from([10, 0, 0, 1]), 64)),
            Requester::Network(Network::of(IpAddr::from([10, 0, 0, 2]), 64)),
        );
        for i in 0..3 {
            lane.push(a, marker(i, log.clone()));
        }
        lane.push(b, marker(10, log.clone()));
        let mut memory = Vec::new();
        while let Some(job) = lane.pop() {
            job(&mut memory);
        }
        assert_eq!(*log.lock().unwrap(), vec![0, 10, 1, 2]);
    }
}
