//! The data sets a configuration names ([`DatasetSpec`]), read through their format's reader
//! (`formats/`, one file per published layout) or the generic `path,mean[,std]` CSV.
//!
//! Every reader turns its set into [`Sample`]s: an image path, the age μ and its σ. Apparent-age
//! sets (APPA-REAL, ChaLearn LAP 2015/2016) carry σ, the spread of the human guesses; real-age
//! sets (UTKFace, MORPH II, FG-NET, IMDB-WIKI) take the configured `sigma`. A bad row is an error
//! naming `file:line`; rows a set's authors ask to leave out (IMDB-WIKI's low face scores, ages
//! outside 0–100) are counted in the `ReadReport`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use dldl::{MAX_AGE, distribution::label::validate_label};
use serde::{Deserialize, Serialize};

use crate::data::{
    FaceMode, Sample,
    formats::{
        ReadReport,
        appa_real::{AppaRealSpec, read_appa_real},
        chalearn::{ChalearnSpec, read_chalearn},
        csv::read_csv,
        folder::{FGNET_PATTERN, FolderSpec, UTKFACE_PATTERN, fgnet_age, read_folder, utkface_age},
        imdb_wiki::{ImdbWikiSpec, read_imdb_wiki},
        morph::{MorphSpec, read_morph},
    },
};

/// σ given to real-age sets when the configuration names none.
pub const DEFAULT_REAL_AGE_SIGMA: f32 = 3.0;

/// The σ of a real-age set's label distributions: one for every age (`sigma = 3`), or one that
/// grows with the age, straight from `at_0` at age 0 to `at_100` at age 100
/// (`sigma = { at_0 = 1.5, at_100 = 6 }`): guesses, and errors, spread wider at older ages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Sigma {
    Constant(f32),
    ByAge { at_0: f32, at_100: f32 },
}

impl Sigma {
    /// σ for a face of age `mu`.
    pub fn at(self, mu: f32) -> f32 {
        match self {
            Sigma::Constant(sigma) => sigma,
            Sigma::ByAge { at_0, at_100 } => at_0 + (at_100 - at_0) * mu / MAX_AGE as f32,
        }
    }

    /// Checks that every age gets a usable σ.
    pub fn validate(self) -> Result<()> {
        for age in [0.0, MAX_AGE as f32] {
            validate_label(age, self.at(age)).context("the configured sigma")?;
        }
        Ok(())
    }
}

impl From<f32> for Sigma {
    fn from(sigma: f32) -> Self {
        Sigma::Constant(sigma)
    }
}

/// One data set as a configuration names it. Relative paths are relative to the configuration
/// file (or the working directory on the command line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "format", rename_all = "kebab-case")]
pub enum DatasetSpec {
    /// `path,mean[,std]` rows, paths relative to the CSV (the synthetic set's format).
    Csv(CsvSpec),
    /// APPA-REAL: `gt_avg_<split>.csv` and the `<split>/` image folder under `root`.
    AppaReal(AppaRealSpec),
    /// ChaLearn LAP 2015 apparent age: `image;mean;std` rows.
    #[serde(rename = "chalearn-2015")]
    Chalearn2015(ChalearnSpec),
    /// ChaLearn LAP 2016 apparent age: `image,mean,std` rows.
    #[serde(rename = "chalearn-2016")]
    Chalearn2016(ChalearnSpec),
    /// UTKFace: a folder of `[age]_[gender]_[race]_[date&time].jpg` files.
    Utkface(FolderSpec),
    /// MORPH II: a metadata CSV with an `age` column and an image path column.
    Morph(MorphSpec),
    /// FG-NET: a folder of `001A02.JPG` files (subject 001, age 2).
    Fgnet(FolderSpec),
    /// IMDB-WIKI: the `imdb.mat` / `wiki.mat` metadata and the image folder.
    ImdbWiki(ImdbWikiSpec),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CsvSpec {
    pub path: PathBuf,
    /// σ for rows without one.
    pub sigma: Option<Sigma>,
    /// Default `as-is`: the generic CSV usually lists crops (the synthetic set does).
    #[serde(default = "as_is")]
    pub faces: FaceMode,
    pub limit: Option<usize>,
}

fn as_is() -> FaceMode {
    FaceMode::AsIs
}

/// A set's samples with how they are to be preprocessed.
#[derive(Debug, Clone)]
pub struct ReadSet {
    pub samples: Vec<Sample>,
    pub faces: FaceMode,
    pub report: ReadReport,
}

impl DatasetSpec {
    /// A `path,mean[,std]` CSV as named on the command line: every row, σ for rows without one.
    pub fn csv(path: PathBuf, sigma: f32, faces: FaceMode) -> Self {
        DatasetSpec::Csv(CsvSpec {
            path,
            sigma: Some(Sigma::Constant(sigma)),
            faces,
            limit: None,
        })
    }

    /// The set's kind and main path, for messages and model cards.
    pub fn name(&self) -> String {
        let (kind, path) = match self {
            DatasetSpec::Csv(s) => ("csv", &s.path),
            DatasetSpec::AppaReal(s) => ("appa-real", &s.root),
            DatasetSpec::Chalearn2015(s) => ("chalearn-2015", &s.csv),
            DatasetSpec::Chalearn2016(s) => ("chalearn-2016", &s.csv),
            DatasetSpec::Utkface(s) => ("utkface", &s.dir),
            DatasetSpec::Morph(s) => ("morph", &s.csv),
            DatasetSpec::Fgnet(s) => ("fgnet", &s.dir),
            DatasetSpec::ImdbWiki(s) => ("imdb-wiki", &s.mat),
        };
        let list = match self {
            DatasetSpec::Utkface(s) | DatasetSpec::Fgnet(s) => s.list.as_deref(),
            _ => None,
        };
        match list.and_then(|l| l.file_name()) {
            Some(list) => format!("{kind} {} ({})", path.display(), list.to_string_lossy()),
            None => format!("{kind} {}", path.display()),
        }
    }

    pub fn faces(&self) -> FaceMode {
        match self {
            DatasetSpec::Csv(s) => s.faces,
            DatasetSpec::AppaReal(s) => s.faces,
            DatasetSpec::Chalearn2015(s) | DatasetSpec::Chalearn2016(s) => s.faces,
            DatasetSpec::Utkface(s) | DatasetSpec::Fgnet(s) => s.faces,
            DatasetSpec::Morph(s) => s.faces,
            DatasetSpec::ImdbWiki(s) => s.faces,
        }
    }

    fn limit(&self) -> Option<usize> {
        match self {
            DatasetSpec::Csv(s) => s.limit,
            DatasetSpec::AppaReal(s) => s.limit,
            DatasetSpec::Chalearn2015(s) | DatasetSpec::Chalearn2016(s) => s.limit,
            DatasetSpec::Utkface(s) | DatasetSpec::Fgnet(s) => s.limit,
            DatasetSpec::Morph(s) => s.limit,
            DatasetSpec::ImdbWiki(s) => s.limit,
        }
    }

    /// Makes every relative path relative to `base`.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        match self {
            DatasetSpec::Csv(s) => fix(&mut s.path),
            DatasetSpec::AppaReal(s) => fix(&mut s.root),
            DatasetSpec::Chalearn2015(s) | DatasetSpec::Chalearn2016(s) => {
                fix(&mut s.csv);
                s.images.as_mut().map(fix);
            }
            DatasetSpec::Utkface(s) | DatasetSpec::Fgnet(s) => {
                fix(&mut s.dir);
                s.list.as_mut().map(fix);
            }
            DatasetSpec::Morph(s) => {
                fix(&mut s.csv);
                s.images.as_mut().map(fix);
            }
            DatasetSpec::ImdbWiki(s) => {
                fix(&mut s.mat);
                s.images.as_mut().map(fix);
            }
        }
    }

    /// Reads the set's labels (not its images).
    pub fn read(&self) -> Result<ReadSet> {
        let mut report = ReadReport {
            name: self.name(),
            ..ReadReport::default()
        };
        let sigma = |s: Option<Sigma>| -> Result<Sigma> {
            let sigma = s.unwrap_or(Sigma::Constant(DEFAULT_REAL_AGE_SIGMA));
            sigma.validate()?;
            Ok(sigma)
        };
        let mut samples = match self {
            DatasetSpec::Csv(s) => {
                let samples = read_csv(&s.path, sigma(s.sigma)?)?;
                report.rows = samples.len();
                samples
            }
            DatasetSpec::AppaReal(s) => read_appa_real(s, sigma(s.sigma)?, &mut report)?,
            DatasetSpec::Chalearn2015(s) => read_chalearn(s, ';', &mut report)?,
            DatasetSpec::Chalearn2016(s) => read_chalearn(s, ',', &mut report)?,
            DatasetSpec::Utkface(s) => read_folder(
                s,
                utkface_age,
                UTKFACE_PATTERN,
                sigma(s.sigma)?,
                &mut report,
            )?,
            DatasetSpec::Fgnet(s) => {
                read_folder(s, fgnet_age, FGNET_PATTERN, sigma(s.sigma)?, &mut report)?
            }
            DatasetSpec::Morph(s) => read_morph(s, sigma(s.sigma)?, &mut report)?,
            DatasetSpec::ImdbWiki(s) => read_imdb_wiki(s, sigma(s.sigma)?, &mut report)?,
        };
        if let Some(limit) = self.limit() {
            samples.truncate(limit);
        }
        report.kept = samples.len();
        if samples.is_empty() {
            bail!("{} holds no usable samples", self.name());
        }
        Ok(ReadSet {
            samples,
            faces: self.faces(),
            report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::formats::{
        imdb_wiki::datenum_to_date,
        matfile::{MatValue, write::*},
    };
    use std::fs;

    fn spec(toml_text: &str) -> DatasetSpec {
        toml::from_str(toml_text).unwrap()
    }

    fn read(spec: &DatasetSpec) -> ReadSet {
        spec.read().unwrap()
    }

    fn error(spec: &DatasetSpec) -> String {
        format!("{:#}", spec.read().unwrap_err())
    }

    fn toml_path(p: &Path) -> String {
        p.display().to_string().replace('\\', "/")
    }

    #[test]
    fn a_value_holding_a_line_break_is_quoted_escaped_on_one_line() {
        // Found by `cargo xtask fuzz`: a quoted CSV field may span lines, and the message
        // quoting it did too.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("set.csv");
        fs::write(&csv, "path,mean\na.png,\"3.5\nb.png\"\n").unwrap();
        let message = format!("{:#}", read_csv(&csv, 3.0.into()).unwrap_err());
        assert!(!message.contains('\n'), "{message}");
        assert!(
            message.contains("`3.5\\nb.png` is not a number"),
            "{message}"
        );
        assert_eq!(
            crate::data::formats::quoted("a\tb\r\nc ä"),
            "a\\tb\\r\\nc ä"
        );
    }

    #[test]
    fn appa_real_apparent_real_and_crops() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("gt_avg_valid.csv"),
            "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n\
             005613.jpg,38,21.342105,4.092350,24\n\
             005614.jpg,36,65.0,5.5,71\n",
        )
        .unwrap();
        let root = toml_path(dir.path());
        let apparent = read(&spec(&format!(
            "format = 'appa-real'\nroot = '{root}'\nsplit = 'valid'"
        )));
        assert_eq!(apparent.samples.len(), 2);
        assert_eq!(
            apparent.samples[0].path,
            dir.path().join("valid/005613.jpg")
        );
        assert_eq!(
            (apparent.samples[0].mu, apparent.samples[0].sigma),
            (21.342105, 4.09235)
        );
        assert_eq!(apparent.faces, FaceMode::Align);
        let real = read(&spec(&format!(
            "format = 'appa-real'\nroot = '{root}'\nsplit = 'valid'\nlabel = 'real'\n\
             sigma = 2.5\ncrops = true"
        )));
        assert_eq!((real.samples[1].mu, real.samples[1].sigma), (71.0, 2.5));
        assert_eq!(
            real.samples[1].path,
            dir.path().join("valid/005614.jpg_face.jpg")
        );
        fs::write(
            dir.path().join("gt_avg_train.csv"),
            "file_name,num_ratings,apparent_age_avg,apparent_age_std,real_age\n\
             000000.jpg,36,5.0,1.5,4\n000001.jpg,36,x,1.5,4\n",
        )
        .unwrap();
        let message = error(&spec(&format!(
            "format = 'appa-real'\nroot = '{root}'\nsplit = 'train'"
        )));
        assert!(
            message.contains("gt_avg_train.csv:3") && message.contains("`x`"),
            "{message}"
        );
    }

    #[test]
    fn chalearn_2015_and_2016() {
        let dir = tempfile::tempdir().unwrap();
        let csv2015 = dir.path().join("Train.csv");
        fs::write(&csv2015, "image_1.jpg;25.375;4.8714\nimage_2.jpg;61;9.1\n").unwrap();
        let set = read(&spec(&format!(
            "format = 'chalearn-2015'\ncsv = '{}'\nimages = 'imgs'",
            toml_path(&csv2015)
        )));
        assert_eq!(set.samples.len(), 2);
        assert_eq!(set.samples[0].path, PathBuf::from("imgs/image_1.jpg"));
        assert_eq!((set.samples[0].mu, set.samples[0].sigma), (25.375, 4.8714));
        let csv2016 = dir.path().join("train_gt.csv");
        fs::write(&csv2016, "image,mean,stdv\n000001.jpg,30.1,4\n").unwrap();
        let set = read(&spec(&format!(
            "format = 'chalearn-2016'\ncsv = '{}'",
            toml_path(&csv2016)
        )));
        assert_eq!(set.samples[0].path, dir.path().join("000001.jpg"));
        // The other year's separator is named in the error.
        let message = error(&spec(&format!(
            "format = 'chalearn-2016'\ncsv = '{}'",
            toml_path(&csv2015)
        )));
        assert!(
            message.contains("Train.csv:1") && message.contains("2015 uses"),
            "{message}"
        );
    }

    #[test]
    fn utkface_and_fgnet_file_names() {
        assert_eq!(
            utkface_age("26_1_0_20170116174525125.jpg.chip.jpg"),
            Some(26.0)
        );
        assert_eq!(
            utkface_age("39_1_20170116174525125.jpg.chip.jpg"),
            Some(39.0)
        );
        assert_eq!(utkface_age("x_1_0.jpg"), None);
        assert_eq!(fgnet_age("001A02.JPG"), Some(2.0));
        assert_eq!(fgnet_age("010A07a.JPG"), Some(7.0));
        assert_eq!(fgnet_age("069A43.jpg"), Some(43.0));
        assert_eq!(fgnet_age("readme.JPG"), None);
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "26_1_0_20170116174525125.jpg.chip.jpg",
            "116_1_0_20170120134921760.jpg.chip.jpg",
            "holiday.jpg",
            "notes.txt",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let set = read(&spec(&format!(
            "format = 'utkface'\ndir = '{}'\nsigma = 4",
            toml_path(dir.path())
        )));
        assert_eq!(set.samples.len(), 1);
        assert_eq!((set.samples[0].mu, set.samples[0].sigma), (26.0, 4.0));
        assert_eq!(set.report.rows, 4);
        assert_eq!(set.report.left_out["age above 100"], 1);
        assert_eq!(set.report.left_out["not a .jpg, .jpeg or .png file"], 1);
        // σ that grows with the age: 2 at 0, 7 at 100, so 3.3 at 26.
        let set = read(&spec(&format!(
            "format = 'utkface'\ndir = '{}'\nsigma = {{ at_0 = 2, at_100 = 7 }}",
            toml_path(dir.path())
        )));
        assert!(
            (set.samples[0].sigma - 3.3).abs() < 1e-5,
            "{}",
            set.samples[0].sigma
        );
        // One that turns negative at an end is refused, naming the setting.
        let message = error(&spec(&format!(
            "format = 'utkface'\ndir = '{}'\nsigma = {{ at_0 = 3, at_100 = -1 }}",
            toml_path(dir.path())
        )));
        assert!(message.contains("the configured sigma"), "{message}");
        assert!(!message.contains('\n'), "{message}");
        // A split list reads only the files it names; a name the folder lacks is counted.
        let list = dir.path().join("train.txt");
        fs::write(
            &list,
            "26_1_0_20170116174525125.jpg.chip.jpg\n\n30_0_1_2017.jpg.chip.jpg\n",
        )
        .unwrap();
        let set = read(&spec(&format!(
            "format = 'utkface'\ndir = '{}'\nlist = '{}'",
            toml_path(dir.path()),
            toml_path(&list)
        )));
        assert_eq!(set.samples.len(), 1);
        assert_eq!(
            set.report.left_out["listed in the split but not in the folder"],
            1
        );
        assert!(
            set.report.name.ends_with("(train.txt)"),
            "{}",
            set.report.name
        );
        // A folder of other files, an empty folder, a missing one, a list naming a path: one
        // line naming the folder (and the pattern where there is one).
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join("holiday.jpg"), b"").unwrap();
        let empty = tempfile::tempdir().unwrap();
        fs::write(&list, "../secret.jpg\n").unwrap();
        for (text, needle) in [
            (
                format!("format = 'utkface'\ndir = '{}'", toml_path(other.path())),
                "holds no image named `[age]_[gender]_[race]_[date&time].jpg`",
            ),
            (
                format!("format = 'fgnet'\ndir = '{}'", toml_path(empty.path())),
                "holds no image named `001A02.JPG`",
            ),
            (
                format!(
                    "format = 'utkface'\ndir = '{}'",
                    toml_path(&empty.path().join("nowhere"))
                ),
                "cannot read the folder",
            ),
            (
                format!(
                    "format = 'utkface'\ndir = '{}'\nlist = '{}'",
                    toml_path(&empty.path().join("nowhere")),
                    toml_path(&list)
                ),
                "does not exist or is not a folder",
            ),
            (
                format!(
                    "format = 'utkface'\ndir = '{}'\nlist = '{}'",
                    toml_path(dir.path()),
                    toml_path(&list)
                ),
                "train.txt:1: `../secret.jpg` is not a file name",
            ),
        ] {
            let error = format!("{:#}", spec(&text).read().unwrap_err());
            assert!(error.contains(needle), "{needle}: {error}");
            assert!(!error.contains('\n'), "{error}");
        }
        let dir = tempfile::tempdir().unwrap();
        for name in ["001A02.JPG", "001A43a.JPG", "002A16.JPG"] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        let set = read(&spec(&format!(
            "format = 'fgnet'\ndir = '{}'",
            toml_path(dir.path())
        )));
        let ages: Vec<f32> = set.samples.iter().map(|s| s.mu).collect();
        assert_eq!(ages, vec![2.0, 43.0, 16.0]);
        assert_eq!(set.samples[0].sigma, DEFAULT_REAL_AGE_SIGMA);
    }

    #[test]
    fn morph_metadata_csv() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("morph_2008_nonCommercial.csv");
        fs::write(
            &csv,
            "id_num,picture_num,dob,doa,race,gender,facial_hair,age,age_diff,glasses,photo\n\
             3287,0,\"1/1/1957\",\"6/10/2003\",B,M,0,46,0,0,Album2/003287_00M46.JPG\n\
             3288,1,\"1/1/1990\",\"6/10/2003\",W,F,0,13,0,0,Album2/003288_01F13.JPG\n",
        )
        .unwrap();
        let set = read(&spec(&format!(
            "format = 'morph'\ncsv = '{}'\nsigma = 2",
            toml_path(&csv)
        )));
        assert_eq!(set.samples.len(), 2);
        assert_eq!(
            set.samples[0].path,
            dir.path().join("Album2/003287_00M46.JPG")
        );
        assert_eq!((set.samples[1].mu, set.samples[1].sigma), (13.0, 2.0));
        let message = error(&spec(&format!(
            "format = 'morph'\ncsv = '{}'\nage_column = 'years'",
            toml_path(&csv)
        )));
        assert!(message.contains("no `years` column"), "{message}");
    }

    fn imdb(
        dob: Vec<f64>,
        taken: Vec<f64>,
        paths: &[&str],
        score: Vec<f64>,
        second: Vec<f64>,
    ) -> MatValue {
        scalar_struct(vec![
            ("dob", row(dob)),
            ("photo_taken", row(taken)),
            (
                "full_path",
                cell_row(paths.iter().map(|p| string(p)).collect()),
            ),
            ("gender", row(vec![1.0; paths.len()])),
            (
                "name",
                cell_row(paths.iter().map(|_| string("A Person")).collect()),
            ),
            ("face_score", row(score)),
            ("second_face_score", row(second)),
        ])
    }

    #[test]
    fn imdb_wiki_mat_with_the_authors_filters() {
        // 1 January 1970 and 15 December 1980 as MATLAB datenums.
        assert_eq!(datenum_to_date(719_529.0), (1970, 1, 1));
        assert_eq!(datenum_to_date(723_530.0), (1980, 12, 15));
        assert_eq!(datenum_to_date(1.0), (0, 1, 1));
        let dir = tempfile::tempdir().unwrap();
        let value = imdb(
            vec![719_529.0, 723_530.0, 719_529.0, 719_529.0, 719_529.0],
            vec![2000.0, 2010.0, 2000.0, 2000.0, 1960.0],
            &["01/a.jpg", "02/b.jpg", "03/c.jpg", "04/d.jpg", "05/e.jpg"],
            vec![4.5, 2.0, f64::NEG_INFINITY, 3.0, 3.0],
            vec![f64::NAN, f64::NAN, f64::NAN, 1.5, f64::NAN],
        );
        for compress in [true, false] {
            let mat = dir.path().join("imdb.mat");
            fs::write(&mat, mat_file(&[("imdb", value.clone())], compress)).unwrap();
            let set = read(&spec(&format!(
                "format = 'imdb-wiki'\nmat = '{}'\nsigma = 5",
                toml_path(&mat)
            )));
            let got: Vec<(PathBuf, f32)> =
                set.samples.iter().map(|s| (s.path.clone(), s.mu)).collect();
            // Born 1 Jan 1970, photo mid-2000: 30. Born 15 Dec 1980, photo mid-2010: 29.
            assert_eq!(
                got,
                vec![
                    (dir.path().join("01/a.jpg"), 30.0),
                    (dir.path().join("02/b.jpg"), 29.0)
                ]
            );
            assert_eq!(set.report.rows, 5);
            assert_eq!(set.report.left_out.values().sum::<usize>(), 3);
            // A second face scored 1.5 is kept when only second faces ≥ 2 are refused.
            let set = read(&spec(&format!(
                "format = 'imdb-wiki'\nmat = '{}'\nmax_second_face_score = 2.0",
                toml_path(&mat)
            )));
            assert_eq!(set.samples.len(), 3);
        }
    }

    /// The same layout written by SciPy's MAT-file writer (compressed level 5, uint16 years),
    /// by `scripts/imdb_wiki_fixture.py`.
    #[test]
    fn imdb_wiki_mat_written_by_scipy() {
        let mat = crate::crate_dir().join("../tests/fixtures/imdb_wiki/wiki.mat");
        let set = read(&spec(&format!(
            "format = 'imdb-wiki'\nmat = '{}'\nimages = 'wiki_crop'",
            toml_path(&mat)
        )));
        let got: Vec<(PathBuf, f32)> = set.samples.iter().map(|s| (s.path.clone(), s.mu)).collect();
        assert_eq!(
            got,
            vec![(
                PathBuf::from("wiki_crop/17/10000217_1981-05-05_2009.jpg"),
                28.0
            )]
        );
        let lenient = read(&spec(&format!(
            "format = 'imdb-wiki'\nmat = '{}'\nmax_second_face_score = 2.0",
            toml_path(&mat)
        )));
        let ages: Vec<f32> = lenient.samples.iter().map(|s| s.mu).collect();
        assert_eq!(ages, vec![28.0, 39.0]);
        assert_eq!(set.report.rows, 5);
        assert_eq!(set.report.left_out["a second face"], 2);
        assert_eq!(
            set.report.left_out["no face, or face score below min_face_score"],
            1
        );
        assert_eq!(
            set.report.left_out["date of birth or photo year gives no age in 0–100"],
            1
        );
    }

    #[test]
    fn imdb_wiki_mat_of_the_wrong_shape() {
        let dir = tempfile::tempdir().unwrap();
        let mat = dir.path().join("wiki.mat");
        let spec = spec(&format!(
            "format = 'imdb-wiki'\nmat = '{}'",
            toml_path(&mat)
        ));
        let mut short = imdb(
            vec![719_529.0],
            vec![2000.0, 2001.0],
            &["a.jpg", "b.jpg"],
            vec![2.0, 2.0],
            vec![f64::NAN, f64::NAN],
        );
        fs::write(&mat, mat_file(&[("wiki", short.clone())], true)).unwrap();
        let message = error(&spec);
        assert!(
            message.contains("`wiki.dob` has 1 entries, `full_path` 2"),
            "{message}"
        );
        if let MatValue::Struct { fields, .. } = &mut short {
            fields.remove("face_score");
        }
        fs::write(&mat, mat_file(&[("wiki", short)], true)).unwrap();
        let message = error(&spec);
        assert!(message.contains("no field `face_score`"), "{message}");
        fs::write(&mat, mat_file(&[("wiki", row(vec![1.0, 2.0]))], false)).unwrap();
        let message = error(&spec);
        assert!(
            message.contains("`wiki` is a 1×2 numeric array"),
            "{message}"
        );
        fs::write(&mat, b"not a mat file").unwrap();
        let message = error(&spec);
        assert!(
            message.contains("not a MATLAB level-5 MAT-file"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_and_formats_are_refused() {
        let message = toml::from_str::<DatasetSpec>("format = 'csv'\npath = 'a.csv'\nsigmaa = 3")
            .unwrap_err()
            .to_string();
        assert!(message.contains("sigmaa"), "{message}");
        let message = toml::from_str::<DatasetSpec>("format = 'adience'\npath = 'a.csv'")
            .unwrap_err()
            .to_string();
        assert!(message.contains("adience"), "{message}");
    }
}
