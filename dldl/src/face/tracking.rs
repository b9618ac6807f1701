//! Following faces from frame to frame so that each one's estimate settles.
//!
//! A face in a new frame continues the track whose last box it overlaps most (IoU above a
//! threshold). The track's distribution is an exponential moving average of the frames'
//! distributions — the distributions are combined, not just the numbers — so E[age] and σ come
//! from one smoothed distribution. A track not seen for a few frames is dropped: a face that
//! leaves and comes back starts afresh.

use serde::Serialize;

use crate::{
    DldlError,
    distribution::{expected_age, std_dev, top_ages},
    face::pipeline::FaceEstimate,
};

/// Overlap above which a detection continues a track.
const MIN_IOU: f32 = 0.3;

#[derive(Debug, Clone)]
struct Track {
    id: u32,
    bbox: [f32; 4],
    distribution: Vec<f32>,
    frames: u32,
    missed: u32,
}

/// Smooths per-face distributions over successive frames.
#[derive(Debug, Clone)]
pub struct Tracker {
    /// Weight of the past in the moving average, in [0, 1): 0 shows every frame as it is.
    pub memory: f32,
    /// Frames a face may go unseen before its track is dropped.
    pub max_missed: u32,
    tracks: Vec<Track>,
    next_id: u32,
}

/// A face of the current frame with its smoothed estimate.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackedFace {
    /// Stable while the face stays in view.
    pub track: u32,
    /// Frames this track has been seen in.
    pub frames: u32,
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
            tracks: Vec::new(),
            next_id: 1,
        }
    }

    /// Forgets every face.
    pub fn reset(&mut self) {
        self.tracks.clear();
    }

    /// Takes one frame's faces and returns them smoothed, in the same order.
    pub fn update(&mut self, faces: Vec<FaceEstimate>) -> Result<Vec<TrackedFace>, DldlError> {
        // Greedy matching, best overlaps first.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (f, face) in faces.iter().enumerate() {
            for (t, track) in self.tracks.iter().enumerate() {
                let overlap = iou(&face.bbox, &track.bbox);
                if overlap > MIN_IOU {
                    pairs.push((overlap, f, t));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut track_of = vec![None; faces.len()];
        let mut taken = vec![false; self.tracks.len()];
        for (_, f, t) in pairs {
            if track_of[f].is_none() && !taken[t] {
                track_of[f] = Some(t);
                taken[t] = true;
            }
        }
        for (track, seen) in self.tracks.iter_mut().zip(&taken) {
            if !seen {
                track.missed += 1;
            }
        }
        let mut out = Vec::with_capacity(faces.len());
        let mut new_tracks = Vec::new();
        for (face, matched) in faces.into_iter().zip(track_of) {
            let track = match matched {
                Some(t) => {
                    let track = &mut self.tracks[t];
                    let memory = self.memory;
                    for (past, now) in track.distribution.iter_mut().zip(&face.distribution) {
                        *past = memory * *past + (1.0 - memory) * now;
                    }
                    track.bbox = face.bbox;
                    track.frames += 1;
                    track.missed = 0;
                    track.clone()
                }
                None => {
                    let track = Track {
                        id: self.next_id,
                        bbox: face.bbox,
                        distribution: face.distribution.clone(),
                        frames: 1,
                        missed: 0,
                    };
                    self.next_id += 1;
                    new_tracks.push(track.clone());
                    track
                }
            };
            let mut face = face;
            face.expected_age = expected_age(&track.distribution)?;
            face.sigma = std_dev(&track.distribution)?;
            face.top_ages = top_ages(&track.distribution, 5);
            face.distribution = track.distribution;
            out.push(TrackedFace {
                track: track.id,
                frames: track.frames,
                face,
            });
        }
        let max_missed = self.max_missed;
        self.tracks.retain(|t| t.missed <= max_missed);
        self.tracks.extend(new_tracks);
        Ok(out)
    }
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
