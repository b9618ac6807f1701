"""Writes tests/fixtures/imdb_wiki/wiki.mat: IMDB-WIKI's metadata layout, saved by SciPy's
MAT-file writer (level 5, compressed, as MATLAB's default `save` writes the published files), so
that the trainer's reader is checked against another implementation's output, not only its own.

    python3 -m pip install scipy==1.17.1 numpy
    python3 scripts/imdb_wiki_fixture.py
"""

from pathlib import Path

import numpy as np
import scipy.io

root = Path(__file__).resolve().parent.parent
out = root / "tests/fixtures/imdb_wiki/wiki.mat"

# Five rows: two good faces, one with no face (score -inf), one with a second face, one whose
# dates give no age in 0..=100.
full_path = np.empty((1, 5), dtype=object)
for i, p in enumerate(["17/10000217_1981-05-05_2009.jpg", "48/10000548_1925-04-04_1964.jpg",
                       "12/100012_1948-07-03_2008.jpg", "65/10001965_1930-05-23_1961.jpg",
                       "16/10002116_1971-05-31_2012.jpg"]):
    full_path[0, i] = p
name = np.empty((1, 5), dtype=object)
for i in range(5):
    name[0, i] = f"Person {i}"
face_location = np.empty((1, 5), dtype=object)
for i in range(5):
    face_location[0, i] = np.array([[111.29, 111.29, 252.67, 252.67]])

wiki = {
    # MATLAB datenums of 5 May 1981, 4 Apr 1925, 3 Jul 1948, 23 May 1930, 31 May 1971.
    "dob": np.array([[723671.0, 703186.0, 711677.0, 705061.0, 720044.0]]),
    "photo_taken": np.array([[2009, 1964, 2008, 1961, 1870]], dtype=np.uint16),
    "full_path": full_path,
    "gender": np.array([[1.0, 1.0, 1.0, 0.0, np.nan]]),
    "name": name,
    "face_location": face_location,
    "face_score": np.array([[4.3009, 2.6457, -np.inf, 3.4080, 3.1]]),
    "second_face_score": np.array([[np.nan, 1.9497, np.nan, 2.1, np.nan]]),
}
scipy.io.savemat(out, {"wiki": wiki}, do_compression=True, format="5")
print(f"wrote {out} ({out.stat().st_size} bytes)")
