//! Following faces from frame to frame so that each one's estimate settles.
//!
//! A face in a new frame continues the track whose last box it overlaps most (IoU above a
//! threshold). The track's distribution is an exponential moving average of the frames'
//! distributions — the distributions are combined, not just the numbers — so E[age] and σ come
//! from one smoothed distribution. A track not seen for a few frames is dropped: a face that
//! leaves and comes back starts afresh.
//!
//! **The settled-track rule** ([`Tracker::every`]): the age network need not run on every
//! frame of a face whose estimate has settled. A track that has had the network on
//! [`SETTLE_FRAMES`] frames is *settled*. The settled faces share one turn: on one frame in
//! `every` the network runs on one of them, each in turn (by track id), so with n settled faces
//! each gets it on one frame in n·`every`, and the frame time hardly grows with the number of
//! faces once they have settled. A settled face whose box has moved (IoU with the box of its
//! last network frame below [`MOVED_IOU`]) gets the network at once, out of turn, and so does a
//! face that is not settled yet. On the other frames the face keeps its smoothed distribution and its last
//! landmarks, moved with its box. [`Tracker::plan`] says which detections need the network;
//! [`Tracker::update_partial`] takes the estimates of those and the boxes of all.

use serde::Serialize;

use crate::{
    DldlError,
    distribution::{expected_age, std_dev, top_ages},
    face::detector::FaceDetection,
    face::pipeline::{Alignment, FaceEstimate},
};

/// Overlap above which a detection continues a track.
const MIN_IOU: f32 = 0.3;
/// Frames with the network after which a track is settled.
pub const SETTLE_FRAMES: u32 = 5;
/// A settled track's box overlapping the box of its last network frame less than this has
/// moved: the network runs on it again at once.
pub const MOVED_IOU: f32 = 0.7;

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    bbox: [f32; 4],
    distribution: Vec<f32>,
    frames: u32,
    missed: u32,
    /// Frames on which the network ran on this face.
    estimated: u32,
    /// The estimate of its last network frame, and that frame's box.
    last: FaceEstimate,
}

impl Track {
    /// Whether the network must run on this track's face in the next frame, whose box is
    /// `bbox`, whoever's turn it is: the track has not settled, or it has moved.
    fn needs_network(&self, bbox: &[f32; 4], every: u32) -> bool {
        self.estimated < SETTLE_FRAMES || every <= 1 || iou(bbox, &self.last.bbox) < MOVED_IOU
    }
}

/// Smooths per-face distributions over successive frames.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Weight of the past in the moving average, in [0, 1): 0 shows every frame as it is.
    pub memory: f32,
    /// Frames a face may go unseen before its track is dropped.
    pub max_missed: u32,
    /// The settled-track rule: the settled faces get the network on one frame in `every`, in
    /// turn; 1 (the default) runs it on every face of every frame.
    pub every: u32,
    tracks: Vec<Track>,
    next_id: u32,
    /// Frames taken so far (the settled faces' turns count them).
    frame: u64,
}

/// A face of the current frame with its smoothed estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackedFace {
    /// Stable while the face stays in view.
    pub track: u32,
    /// Frames this track has been seen in.
    pub frames: u32,
    /// Whether the network ran on this face in this frame (else its last estimate was kept).
    pub estimated: bool,
    /// This frame's estimate, with `distribution`, `expected_age`, `sigma` and `top_ages` smoothed
    /// over the track (each stream's own distribution is this frame's).
    pub face: FaceEstimate,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker::new(0.7, 5)
    }
}

impl Tracker {
    pub fn new(memory: f32, max_missed: u32) -> Self {
        Tracker {
            memory: memory.clamp(0.0, 0.99),
            max_missed,
            every: 1,
            tracks: Vec::new(),
            next_id: 1,
            frame: 0,
        }
    }

    /// Forgets every face.
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Takes one frame's faces and returns them smoothed, in the same order.
    pub fn update(&mut self, faces: Vec<FaceEstimate>) -> Result<Vec<TrackedFace>, DldlError> {
        let detections: Vec<FaceDetection> = faces
            .iter()
            .map(|f| FaceDetection {
                score: f.score,
                bbox: f.bbox,
                keypoints: f.keypoints,
            })
            .collect();
        self.update_partial(&detections, faces.into_iter().map(Some).collect())
    }

    /// Which of the next frame's detections (their boxes) need the network, by the
    /// settled-track rule; a detection that starts a track always does.
    pub fn plan(&self, boxes: &[[f32; 4]]) -> Vec<bool> {
        let matched = self.matching(boxes);
        let mut plan: Vec<bool> = matched
            .iter()
            .zip(boxes)
            .map(|(m, bbox)| m.is_none_or(|t| self.tracks[t].needs_network(bbox, self.every)))
            .collect();
        // The settled, still faces, by track id: on one frame in `every`, the next of them.
        let mut waiting: Vec<(u32, usize)> = matched
            .iter()
            .enumerate()
            .filter(|&(f, _)| !plan[f])
            .filter_map(|(f, m)| m.map(|t| (self.tracks[t].id, f)))
            .collect();
        let every = u64::from(self.every.max(1));
        if !waiting.is_empty() && self.frame.is_multiple_of(every) {
            waiting.sort_unstable();
            let turn = (self.frame / every) as usize % waiting.len();
            plan[waiting[turn].1] = true;
        }
        plan
    }

    /// Greedy matching of `boxes` to tracks, best overlaps first.
    fn matching(&self, boxes: &[[f32; 4]]) -> Vec<Option<usize>> {
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (f, bbox) in boxes.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(bbox, &track.bbox);
                if overlap > MIN_IOU {
                    pairs.push((overlap, f, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of = vec![None; boxes.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, f, t) in pairs {
            if track_of[f].is_none() && !taken[t] {
                track_of[f] = Some(t);
                taken[t] = true;
            }
        }
        track_of
    }

    /// Takes one frame's detections with the estimates of those the
    /// network ran on (`None` for the others, as [`Tracker::plan`] said) and returns every face
    /// smoothed, in the same order. A face without an estimate keeps its track's distribution
    /// and last estimate, moved to its new box; one without an estimate and without a track
    /// (which `plan` never asks for) is left out.
    pub fn update_partial(
        &mut self,
        detections: &[FaceDetection],
        estimates: Vec<Option<FaceEstimate>>,
    ) -> Result<Vec<TrackedFace>, DldlError> {
        self.frame += 1;
        let boxes: Vec<[f32; 4]> = detections.iter().map(|d| d.bbox).collect();
        let track_of = self.matching(&boxes);
        let mut seen = vec![false; self.tracks.len()];
        for t in track_of.iter().flatten() {
            seen[*t] = true;
        }
        for (track, seen) in self.tracks.iter_mut().zip(&seen) {
            if !seen {
                track.missed += 1;
            }
        }
        let mut out = Vec::with_capacity(detections.len());
        let mut new_tracks = Vec::new();
        for ((detection, estimate), matched) in detections.iter().zip(estimates).zip(track_of) {
            let FaceDetection {
                score,
                bbox,
                keypoints,
            } = *detection;
            let estimated = estimate.is_some();
            let (track, face) = match (matched, estimate) {
                (Some(t), Some(face)) => {
                    let track = &mut self.tracks[t];
                    let memory = self.memory;
                    for (past, now) in track.distribution.iter_mut().zip(&face.distribution) {
                        *past = memory * *past + (1.0 - memory) * now;
                    }
                    track.bbox = face.bbox;
                    track.frames += 1;
                    track.missed = 0;
                    track.estimated += 1;
                    track.last = face.clone();
                    (track.clone(), face)
                }
                (Some(t), None) => {
                    let track = &mut self.tracks[t];
                    track.bbox = bbox;
                    track.frames += 1;
                    track.missed = 0;
                    (track.clone(), carried(&track.last, bbox, keypoints, score))
                }
                (None, Some(face)) => {
                    let track = Track {
                        id: self.next_id,
                        bbox: face.bbox,
                        distribution: face.distribution.clone(),
                        frames: 1,
                        missed: 0,
                        estimated: 1,
                        last: face.clone(),
                    };
                    self.next_id += 1;
                    new_tracks.push(track.clone());
                    (track, face)
                }
                (None, None) => continue,
            };
            let mut face = face;
            face.expected_age = expected_age(&track.distribution)?;
            face.sigma = std_dev(&track.distribution)?;
            face.top_ages = top_ages(&track.distribution, 5);
            face.distribution = track.distribution;
            out.push(TrackedFace {
                track: track.id,
                frames: track.frames,
                estimated,
                face,
            });
        }
        let max_missed = self.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        self.tracks.extend(new_tracks);
        Ok(out)
    }
}

/// A face's last estimate moved to this frame's box: its landmarks shifted and scaled with
/// the box.
fn carried(
    last: &FaceEstimate,
    bbox: [f32; 4],
    keypoints: [[f32; 2]; 6],
    score: f32,
) -> FaceEstimate {
    let [x0, y0, x1, y1] = last.bbox;
    let scale_x = (bbox[2] - bbox[0]) / (x1 - x0).max(1e-6);
    let scale_y = (bbox[3] - bbox[1]) / (y1 - y0).max(1e-6);
    let mut face = last.clone();
    if let Alignment::Landmarks { points } = &mut face.alignment {
        for [x, y] in points.iter_mut() {
            *x = bbox[0] + (*x - x0) * scale_x;
            *y = bbox[1] + (*y - y0) * scale_y;
        }
    }
    face.bbox = bbox;
    face.keypoints = keypoints;
    face.score = score;
    face
}

fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let intersection = w * h;
    let area = |r: &[f32; 4]| (r[2] - r[0]).max(0.0) * (r[3] - r[1]).max(0.0);
    let union = area(a) + area(b) - intersection;
    if union > 0.0 {
        intersection / union
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::distribution::label::label_distribution;

    fn face(x: f32, age: f32) -> FaceEstimate {
        let distribution = label_distribution(age, 3.0).unwrap();
        FaceEstimate {
            score: 0.9,
            bbox: [x, 0.0, x + 100.0, 100.0],
            keypoints: [[0.0; 2]; 6],
            expected_age: age,
            sigma: 3.0,
            top_ages: Vec::new(),
            distribution,
            streams: Vec::new(),
            alignment: crate::face::pipeline::Alignment::Eyes {
                reason: "a test face".into(),
            },
        }
    }

    #[test]
    fn a_face_that_stays_keeps_its_track_and_settles() {
        let mut tracker = Tracker::new(0.7, 2);
        let first = tracker.update(vec![face(0.0, 30.0)]).unwrap();
        assert_eq!(first[0].frames, 1);
        assert!((first[0].face.expected_age - 30.0).abs() < 0.01);
        // The estimate jumps to 50 in one frame: the smoothed one moves only part of the way.
        let second = tracker.update(vec![face(5.0, 50.0)]).unwrap();
        assert_eq!(second[0].track, first[0].track);
        assert_eq!(second[0].frames, 2);
        let moved = second[0].face.expected_age;
        assert!((35.0..40.0).contains(&moved), "{moved}");
        // The smoothed distribution is a mixture: both ages keep mass.
        let p = &second[0].face.distribution;
        assert!(p[30] > 0.05 && p[50] > 0.02, "{} {}", p[30], p[50]);
        // Held at 50, it converges there.
        let mut last = moved;
        for _ in 0..30 {
            last = tracker.update(vec![face(5.0, 50.0)]).unwrap()[0]
                .face
                .expected_age;
        }
        assert!((last - 50.0).abs() < 0.1, "{last}");
    }

    #[test]
    fn a_face_that_leaves_starts_afresh() {
        let mut tracker = Tracker::new(0.7, 2);
        let id = tracker.update(vec![face(0.0, 30.0)]).unwrap()[0].track;
        for _ in 0..3 {
            assert!(tracker.update(Vec::new()).unwrap().is_empty());
        }
        let back = tracker.update(vec![face(0.0, 60.0)]).unwrap();
        assert_ne!(back[0].track, id);
        assert!((back[0].face.expected_age - 60.0).abs() < 0.01);
    }

    fn detection(bbox: [f32; 4]) -> FaceDetection {
        FaceDetection {
            score: 0.9,
            bbox,
            keypoints: [[0.0; 2]; 6],
        }
    }

    #[test]
    fn a_settled_face_gets_the_network_on_one_frame_in_every() {
        let mut tracker = Tracker::new(0.7, 2);
        tracker.every = 3;
        let mut ran = Vec::new();
        for frame in 0..20 {
            let bbox = face(0.0, 40.0).bbox;
            let plan = tracker.plan(&[bbox]);
            ran.push(plan[0]);
            let estimate = plan[0].then(|| face(0.0, 40.0));
            let out = tracker
                .update_partial(&[detection(bbox)], vec![estimate])
                .unwrap();
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].estimated, plan[0], "frame {frame}");
            assert_eq!(out[0].frames, frame + 1);
            assert!((out[0].face.expected_age - 40.0).abs() < 0.01);
        }
        // The first SETTLE_FRAMES frames all run it; then one in three.
        assert!(ran[..SETTLE_FRAMES as usize].iter().all(|&r| r), "{ran:?}");
        let later = ran[SETTLE_FRAMES as usize..].iter().filter(|&&r| r).count();
        assert_eq!(later, 5, "{later} of 15: {ran:?}");
        assert!(
            ran.windows(2)
                .skip(SETTLE_FRAMES as usize)
                .all(|w| !(w[0] && w[1])),
            "never twice in a row once settled: {ran:?}"
        );
        // A face that moves gets it at once, and its carried box follows it.
        let moved = face(60.0, 40.0).bbox;
        assert_eq!(tracker.plan(&[moved]), [true]);
    }

    #[test]
    fn settled_faces_share_one_turn() {
        let mut tracker = Tracker::new(0.7, 2);
        tracker.every = 3;
        let boxes = [0.0, 300.0, 600.0].map(|x| face(x, 40.0).bbox);
        let detections: Vec<FaceDetection> = boxes.iter().map(|&b| detection(b)).collect();
        let mut runs = [0; 3];
        let mut per_frame = Vec::new();
        for frame in 0..50 {
            let plan = tracker.plan(&boxes);
            let estimates = plan
                .iter()
                .zip(&boxes)
                .map(|(&run, b)| run.then(|| face(b[0], 40.0)))
                .collect();
            let out = tracker.update_partial(&detections, estimates).unwrap();
            assert_eq!(out.len(), 3, "frame {frame}");
            if frame >= SETTLE_FRAMES as usize {
                per_frame.push(plan.iter().filter(|&&r| r).count());
                for (count, run) in runs.iter_mut().zip(&plan) {
                    *count += usize::from(*run);
                }
            }
        }
        // 45 settled frames: the network on one face in every third frame, each face in turn.
        assert!(per_frame.iter().all(|&n| n <= 1), "{per_frame:?}");
        assert_eq!(per_frame.iter().sum::<usize>(), 15, "{per_frame:?}");
        assert_eq!(runs, [5, 5, 5]);
        // One face that moves gets it at once, beside the one whose turn it is.
        let mut moved = boxes;
        moved[1] = face(330.0, 40.0).bbox;
        assert!(tracker.plan(&moved)[1]);
    }

    #[test]
    fn a_carried_face_keeps_its_distribution_and_moves_its_landmarks() {
        let mut tracker = Tracker::new(0.7, 2);
        tracker.every = 1000;
        let mut first = face(0.0, 30.0);
        first.alignment = Alignment::Landmarks {
            points: [
                [10.0, 10.0],
                [20.0, 10.0],
                [30.0, 10.0],
                [40.0, 10.0],
                [50.0, 50.0],
            ],
        };
        for _ in 0..SETTLE_FRAMES {
            tracker.update(vec![first.clone()]).unwrap();
        }
        let bbox = [4.0, 0.0, 104.0, 100.0];
        assert_eq!(tracker.plan(&[bbox]), [false]);
        let out = tracker
            .update_partial(&[detection(bbox)], vec![None])
            .unwrap();
        assert!(!out[0].estimated);
        assert_eq!(out[0].face.bbox, bbox);
        assert!((out[0].face.expected_age - 30.0).abs() < 0.01);
        let Alignment::Landmarks { points } = &out[0].face.alignment else {
            panic!("the landmarks were lost");
        };
        assert_eq!(points[0], [14.0, 10.0]);
        // A detection without a track and without an estimate is left out.
        let out = tracker
            .update_partial(&[detection([500.0, 0.0, 600.0, 100.0])], vec![None])
            .unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn two_faces_keep_their_own_tracks() {
        let mut tracker = Tracker::default();
        let first = tracker
            .update(vec![face(0.0, 20.0), face(300.0, 70.0)])
            .unwrap();
        // Listed in the other order next frame, each still continues its own track.
        let second = tracker
            .update(vec![face(305.0, 70.0), face(3.0, 20.0)])
            .unwrap();
        assert_eq!(second[0].track, first[1].track);
        assert_eq!(second[1].track, first[0].track);
        assert!((second[0].face.expected_age - 70.0).abs() < 0.01);
    }
}
