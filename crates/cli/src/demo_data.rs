//! Synthetic data for `medledger demo`: a Serbian primary-care health centre
//! (Dom zdravlja) with its chosen doctors, patients known only by
//! pseudonyms, medical reports with common primary-care ICD-10 codes, and
//! daily vital-sign series as FHIR Observations.
//!
//! [`generate`] is a pure function of the seed, the [`Scale`] and the date
//! it counts back from: the same input gives the same data, byte for byte.
//! No I/O, no signing, no clock.
//!
//! Each patient gets a synthetic 11-digit LBO from the seeded generator and
//! is known from then on only by its pseudonym under a key that is also
//! drawn from the seed. The LBOs never leave this module. Free text is
//! clinical Serbian (Latin script) with no names, no contact data and no
//! long digit runs, so every payload passes the PII guard.
//!
//! Every patient has a stable profile (age band, chronic conditions,
//! baseline blood pressure, pulse, saturation, glucose and laboratory
//! values), so a patient's reports and vitals tell one coherent story. About
//! one patient in four is monitored at home with a daily series; a few of
//! them deteriorate over the last days (rising pulse and breathing rate,
//! falling saturation, fever) and saw their doctor when it began.

use medledger_health::calendar;
use medledger_health::fhir::KIND_OBSERVATION;
use medledger_health::pseudonym::{Identifier, PseudonymKey};
use medledger_health::records::{self, MEDICAL_REPORT};
use medledger_health::registries::{EPIDEMIC_REPORT, VACCINATION_REPORT};
use serde_json::{Value, json};
use std::cmp::Reverse;
use std::collections::HashSet;

/// The health centre every demo doctor works at.
const INSTITUTION: &str = "Dom zdravlja Niš";
/// Reports fall within this many days before `today`.
const REPORT_WINDOW_DAYS: u32 = 90;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const OBSERVATION_CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// Size of a demo data set.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scale {
    /// Doctors of the health centre.
    pub doctors: usize,
    /// Patients; patient `i` has doctor `i % doctors`.
    pub patients: usize,
    /// Medical reports, exactly.
    pub reports: usize,
    /// Days of vital-sign series for the monitored patients.
    pub vitals_days: usize,
}

impl Scale {
    /// A health centre of 8 doctors and 400 patients.
    pub(crate) const DEFAULT: Scale = Scale {
        doctors: 8,
        patients: 400,
        reports: 2000,
        vitals_days: 14,
    };
}

/// A generated data set.
#[derive(Clone, Debug)]
pub(crate) struct Demo {
    /// The health centre, `Dom zdravlja Niš`; every report names it.
    pub institution: String,
    /// Labels of the doctors, such as `izabrani lekar 1 (opšta medicina)`.
    pub doctors: Vec<String>,
    /// Pseudonyms of the patients; patient `i`'s chosen doctor is
    /// `i % doctors.len()`.
    pub patients: Vec<String>,
    /// Records in chronological order of their clinical time.
    pub records: Vec<DemoRecord>,
}

/// One record to be submitted by a doctor.
#[derive(Clone, Debug)]
pub(crate) struct DemoRecord {
    /// Index into [`Demo::doctors`] of the author.
    pub doctor: usize,
    /// `medical_report` or `fhir.observation`.
    pub kind: &'static str,
    /// The payload, valid for `kind`.
    pub payload: Value,
    /// Days before `today` of the clinical time.
    pub day: u32,
}

/// Deterministic data for `seed`, dated up to `today` (`YYYY-MM-DD`):
/// reports fall within the last 90 days (fewer on weekends), vitals within
/// the last `scale.vitals_days` days. With no doctors or no patients there
/// are no records.
///
/// # Panics
///
/// If `today` is not a calendar date written `YYYY-MM-DD`.
pub(crate) fn generate(seed: u64, scale: Scale, today: &str) -> Demo {
    let cal = Calendar::new(today);
    let key = pseudonym_key(seed);
    let patients: Vec<String> = patient_lbos(seed, scale.patients)
        .into_iter()
        .map(|lbo| key.pseudonym(&Identifier::Lbo(lbo)))
        .collect();
    let doctors = (1..=scale.doctors)
        .map(|i| format!("izabrani lekar {i} (opšta medicina)"))
        .collect();
    let mut demo = Demo {
        institution: INSTITUTION.to_owned(),
        doctors,
        patients,
        records: Vec::new(),
    };
    if scale.doctors == 0 || scale.patients == 0 {
        return demo;
    }

    let vitals_days = u32::try_from(scale.vitals_days).unwrap_or(u32::MAX);
    let profiles: Vec<Profile> = (0..scale.patients)
        .map(|i| Profile::new(seed, i, vitals_days))
        .collect();
    let mut timed: Vec<Timed> = Vec::new();
    reports(seed, scale, &cal, &demo.patients, &profiles, &mut timed);
    vitals(seed, scale, &cal, &demo.patients, &profiles, &mut timed);
    // Stable: records at the same minute keep the order they were made in.
    timed.sort_by_key(|t| (Reverse(t.record.day), t.minute));
    demo.records = timed.into_iter().map(|t| t.record).collect();
    demo
}

/// A record with its minute of the day, for ordering.
struct Timed {
    minute: u32,
    record: DemoRecord,
}

// ---------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Independent random streams, so that changing one part of the scale does
/// not reshuffle the others (more reports leave the patients as they were).
#[derive(Clone, Copy)]
enum Stream {
    Key = 1,
    Lbo = 2,
    Patient = 3,
    Reports = 4,
    Vitals = 5,
    Counts = 6,
    Donors = 7,
}

/// splitmix64.
struct Rng(u64);

impl Rng {
    /// Stream `stream` number `index` of `seed`.
    fn stream(seed: u64, stream: Stream, index: u64) -> Rng {
        Rng(mix(
            mix(seed ^ (stream as u64).wrapping_mul(GOLDEN)).wrapping_add(index)
        ))
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        mix(self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `0..n` (`n > 0`).
    fn index(&mut self, n: usize) -> usize {
        self.below(n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn int(&mut self, (lo, hi): (i64, i64)) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    fn range(&mut self, (lo, hi): (f64, f64)) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Triangular noise in `(-spread, spread)`, most often near 0.
    fn noise(&mut self, spread: f64) -> f64 {
        (self.unit() - self.unit()) * spread
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }

    /// An index drawn with the given relative weights (not all zero).
    fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

/// The demo's pseudonymization key, drawn from the seed.
fn pseudonym_key(seed: u64) -> PseudonymKey {
    let mut rng = Rng::stream(seed, Stream::Key, 0);
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    PseudonymKey::from_bytes(&bytes).expect("32 bytes is a valid key length")
}

/// The synthetic, distinct LBOs (11 digits) of patients `0..n`. They only
/// feed the pseudonyms and must never reach the output.
fn patient_lbos(seed: u64, n: usize) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    (0..n)
        .map(|i| {
            let mut rng = Rng::stream(seed, Stream::Lbo, i as u64);
            loop {
                let lbo = format!("{:011}", rng.below(100_000_000_000));
                if seen.insert(lbo.clone()) {
                    return lbo;
                }
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Calendar
// ---------------------------------------------------------------------------

/// Dates counted back from `today`.
struct Calendar {
    /// `today` in days since 1970-01-01.
    today: i64,
}

impl Calendar {
    fn new(today: &str) -> Calendar {
        assert!(
            records::is_date(today),
            "today must be a date written YYYY-MM-DD"
        );
        let num = |r: std::ops::Range<usize>| today[r].parse::<i64>().expect("digits");
        Calendar {
            today: calendar::days_from_civil(num(0..4), num(5..7), num(8..10)),
        }
    }

    fn civil(&self, day: u32) -> (i64, i64, i64) {
        calendar::civil_from_days(self.today - i64::from(day))
    }

    /// `YYYY-MM-DD` of `day` days before today.
    fn date(&self, day: u32) -> String {
        let (y, m, d) = self.civil(day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// A FHIR dateTime (UTC) at `minute` of the day `day` days before today.
    fn date_time(&self, day: u32, minute: u32) -> String {
        format!(
            "{}T{:02}:{:02}:00Z",
            self.date(day),
            minute / 60 % 24,
            minute % 60
        )
    }

    fn month(&self, day: u32) -> i64 {
        self.civil(day).1
    }

    /// 0 for Monday .. 6 for Sunday (1970-01-01 was a Thursday).
    fn weekday(&self, day: u32) -> i64 {
        (self.today - i64::from(day) + 3).rem_euclid(7)
    }
}

// ---------------------------------------------------------------------------
// Diagnoses and their texts
// ---------------------------------------------------------------------------

/// A diagnosis and the texts a report on it is written from.
///
/// Placeholders in braces are filled from [`Vals`]. Texts are in the
/// present tense or nominal style, which in Serbian says nothing of the
/// patient's sex.
struct Dx {
    code: &'static str,
    /// The condition in the genitive: "Od ranije se leči od ...".
    genitive: &'static str,
    /// Relative frequency among acute visits; 0 for chronic conditions,
    /// which come from the patient's profile.
    weight: f64,
    /// Range of the temperature reported at the visit, if febrile.
    fever: Option<(f64, f64)>,
    /// Range of the duration of complaints in days (at least 2, which
    /// reads better than one in `od pre {d}`).
    days: (i64, i64),
    /// Whether it lowers the saturation measured at the visit.
    respiratory: bool,
    /// What the findings add when this is a secondary diagnosis, unless
    /// they already mention it (the text before the first brace).
    note: &'static str,
    anamnesis: &'static [&'static str],
    findings: &'static [&'static str],
    therapy: &'static [&'static str],
}

const DIAGNOSES: &[Dx] = &[
    Dx {
        code: "J06.9",
        genitive: "akutne infekcije gornjih disajnih puteva",
        weight: 24.0,
        fever: Some((37.2, 38.6)),
        days: (2, 4),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Unazad {d} curenje iz nosa, grebanje u grlu i suv kašalj, temperatura do {t} C. Negira otežano disanje i bol u grudima.",
            "Od pre {d} kijanje, zapušen nos, bol u grlu i malaksalost. Merena temperatura do {t} C. Ukućani imaju slične tegobe.",
            "Bol u grlu pri gutanju i sekrecija iz nosa {d}, temperatura do {t} C. Paracetamol uzima povremeno, uz delimično poboljšanje.",
        ],
        findings: &[
            "Temperatura {t} C, TA {sys}/{dia} mmHg, puls {hr}/min, SpO2 {spo2}%. Ždrelo hiperemično, tonzile bez naslaga. Nosna sluznica otečena. Nad plućima normalan disajni šum, bez pripojenih šumova.",
            "Temperatura {t} C. Zadnji zid ždrela crven, granuliran. Limfni čvorovi vrata nisu uvećani. Auskultatorni nalaz na plućima uredan. TA {sys}/{dia} mmHg, SpO2 {spo2}%.",
        ],
        therapy: &[
            "Simptomatski: paracetamol 500 mg do četiri puta dnevno po potrebi, obilna hidratacija, mirovanje. Antibiotik nije indikovan. Kontrola ako temperatura traje duže od tri dana.",
            "Ibuprofen 400 mg do tri puta dnevno posle jela, ispiranje nosa fiziološkim rastvorom, tople tečnosti. Bolovanje {sick} dana, kontrola po potrebi.",
        ],
    },
    Dx {
        code: "J20.9",
        genitive: "akutnog bronhitisa",
        weight: 11.0,
        fever: Some((37.2, 38.5)),
        days: (3, 10),
        respiratory: true,
        note: "",
        anamnesis: &[
            "Kašalj {d}, u početku suv, sada sa oskudnim žućkastim iskašljajem. Temperatura do {t} C, zamara se pri naporu.",
            "Produktivan kašalj i osećaj stezanja u grudima od pre {d}, temperatura do {t} C. Puši oko 20 cigareta dnevno.",
        ],
        findings: &[
            "Temperatura {t} C, SpO2 {spo2}%, disanje {rr}/min. Obostrano difuzni bronhitični šumovi, produžen ekspirijum, bez krepitacija. TA {sys}/{dia} mmHg.",
            "Nad plućima pooštren disajni šum sa retkim zvižducima obostrano. Srčana akcija ritmična, puls {hr}/min. SpO2 {spo2}%, temperatura {t} C.",
        ],
        therapy: &[
            "Acetilcistein 600 mg jednom dnevno 7 dana, paracetamol 500 mg po potrebi, obilna hidratacija. Kontrola za 7 dana ili ranije ako se javi otežano disanje.",
            "Ambroksol sirup tri puta dnevno po 5 ml, inhalacije fiziološkim rastvorom. Savet o prestanku pušenja. Antibiotik za sada nije potreban, kontrola za 5 dana.",
        ],
    },
    Dx {
        code: "M54.5",
        genitive: "bola u krstima",
        weight: 10.0,
        fever: None,
        days: (2, 21),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Bol u slabinskom delu kičme {d}, nastao posle podizanja tereta. Bol se pojačava pri saginjanju, bez širenja u noge.",
            "Tup bol u krstima {d}, jači ujutru i posle dužeg sedenja. Negira slabost u nogama i smetnje pri mokrenju.",
        ],
        findings: &[
            "Paravertebralna muskulatura lumbalno napeta i bolna na palpaciju. Laseg znak negativan obostrano, bez neuroloških ispada. TA {sys}/{dia} mmHg.",
            "Pokretljivost lumbalne kičme bolno ograničena. Laseg znak negativan, refleksi uredni i simetrični. TA {sys}/{dia} mmHg, puls {hr}/min.",
        ],
        therapy: &[
            "Diklofenak 75 mg dva puta dnevno posle jela 5 dana, uz pantoprazol 20 mg. Izbegavati podizanje tereta, postepeno vraćanje aktivnostima. Fizikalna terapija ako bol ne prođe za dve nedelje.",
            "Ibuprofen 400 mg tri puta dnevno posle jela, tiokolhikozid 4 mg dva puta dnevno 5 dana. Lokalno toplo, umerena fizička aktivnost. Bolovanje {sick} dana.",
        ],
    },
    Dx {
        code: "K29.7",
        genitive: "gastritisa",
        weight: 6.0,
        fever: None,
        days: (3, 30),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Peckanje i bol u žličici {d}, pojačani posle jela, mučnina bez povraćanja. Uzima ibuprofen zbog bolova u leđima.",
            "Nadutost i bol u gornjem delu trbuha {d}, muka od masne hrane. Stolica uredna, bez primesa krvi.",
        ],
        findings: &[
            "Trbuh mek, bolno osetljiv u epigastrijumu, bez znakova peritonealnog nadražaja. Peristaltika uredna. TA {sys}/{dia} mmHg.",
            "Jezik obložen. Trbuh palpatorno osetljiv u epigastrijumu, jetra i slezina se ne palpiraju. TA {sys}/{dia} mmHg, puls {hr}/min.",
        ],
        therapy: &[
            "Pantoprazol 40 mg ujutru pre jela 4 nedelje. Izbegavati nesteroidne antiinflamatorne lekove, kafu i alkohol. Ako tegobe potraju, uput za gastroenterologa.",
            "Omeprazol 20 mg dva puta dnevno 14 dana, zatim jednom dnevno. Dijetetski režim, manji i češći obroci. Kontrola za mesec dana.",
        ],
    },
    Dx {
        code: "N39.0",
        genitive: "infekcije mokraćnih puteva",
        weight: 7.0,
        fever: Some((36.8, 38.3)),
        days: (2, 5),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Peckanje i učestalo mokrenje {d}, nagon na mokrenje i bol iznad pubisa. Negira bol u slabinama.",
            "Od pre {d} bolno i učestalo mokrenje, mokraća mutna. Temperatura do {t} C.",
        ],
        findings: &[
            "Suprapubična osetljivost na palpaciju, sukusija bubrega negativna obostrano. Test traka urina: leukociti i nitriti pozitivni. Temperatura {t} C, TA {sys}/{dia} mmHg.",
            "Trbuh mek, bolno osetljiv suprapubično. Sukusija lumbalne regije negativna. U urinu leukociturija i bakteriurija. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Nitrofurantoin 100 mg dva puta dnevno 5 dana, obilna hidratacija. Urinokultura pre početka terapije, kontrola sa nalazom.",
            "Fosfomicin 3 g jednokratno uveče, unos tečnosti najmanje dva litra dnevno. Kontrola za 7 dana sa urinokulturom.",
        ],
    },
    Dx {
        code: "J03.9",
        genitive: "akutnog tonzilitisa",
        weight: 7.0,
        fever: Some((37.8, 39.5)),
        days: (2, 4),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Jak bol u grlu i otežano gutanje {d}, temperatura do {t} C, groznica. Bez kašlja.",
            "Bol u grlu koji se širi ka ušima, malaksalost i temperatura do {t} C od pre {d}.",
        ],
        findings: &[
            "Temperatura {t} C. Tonzile uvećane, hiperemične, sa belim naslagama. Limfni čvorovi vrata uvećani i bolno osetljivi. Pluća uredna, puls {hr}/min. Brzi test na streptokok pozitivan.",
            "Tonzile hipertrofične sa gnojnim čepovima u kriptama, nepčani lukovi crveni. Submandibularni limfni čvorovi uvećani. Temperatura {t} C, TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Amoksicilin 500 mg tri puta dnevno 10 dana, paracetamol 500 mg po potrebi, obilna hidratacija. Kontrola po završetku terapije.",
            "Cefaleksin 500 mg na 8 sati 10 dana, grgljanje čajem od kamilice, mirovanje. Bolovanje {sick} dana.",
        ],
    },
    Dx {
        code: "J01.9",
        genitive: "akutnog sinusitisa",
        weight: 6.0,
        fever: Some((37.0, 38.2)),
        days: (7, 14),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Zapušen nos i gust gnojav sekret {d}, pritisak u predelu čela i obraza koji se pojačava pri saginjanju.",
            "Posle prehlade od pre {d} bol iznad očiju, slabiji njuh i slivanje sekreta niz ždrelo. Temperatura do {t} C.",
        ],
        findings: &[
            "Bolna osetljivost na perkusiju maksilarnih sinusa obostrano. Nosna sluznica otečena, gnojav sekret u nosnim hodnicima. Temperatura {t} C.",
            "Palpatorna osetljivost nad frontalnim i maksilarnim sinusima. Zadnji zid ždrela sa slivanjem sekreta. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Amoksicilin sa klavulanskom kiselinom 875/125 mg dva puta dnevno 7 dana, kortikosteroidni sprej za nos, ispiranje nosa fiziološkim rastvorom.",
            "Ksilometazolin kapi za nos najduže 5 dana, inhalacije, paracetamol po potrebi. Ako nema poboljšanja za 7 dana, uput za ORL pregled.",
        ],
    },
    Dx {
        code: "R50.9",
        genitive: "febrilnog stanja",
        weight: 3.0,
        fever: Some((38.0, 39.5)),
        days: (2, 4),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Temperatura do {t} C {d}, groznica, bolovi u mišićima. Bez kašlja, bez tegoba pri mokrenju i bez proliva.",
            "Od pre {d} povišena temperatura do {t} C i malaksalost, bez drugih tegoba.",
        ],
        findings: &[
            "Temperatura {t} C, puls {hr}/min, TA {sys}/{dia} mmHg. Ždrelo mirno, pluća auskultatorno uredna, trbuh mek i bezbolan. Bez meningealnih znakova.",
            "Temperatura {t} C. Kliničkim pregledom se fokus infekcije ne nalazi. Uput za laboratoriju: KKS, CRP i urin.",
        ],
        therapy: &[
            "Paracetamol 500 mg na 6 sati po potrebi, obilna hidratacija. Laboratorijske analize, kontrola sutra sa nalazima.",
            "Antipiretici po potrebi, mirovanje, unos tečnosti. Javiti se odmah ako se jave otežano disanje, osip ili ukočenost vrata.",
        ],
    },
    Dx {
        code: "J10.1",
        genitive: "gripa",
        weight: 5.0,
        fever: Some((38.2, 39.5)),
        days: (2, 4),
        respiratory: true,
        note: "",
        anamnesis: &[
            "Naglo nastala visoka temperatura do {t} C pre {d}, jeza, bolovi u mišićima i zglobovima, suv kašalj i glavobolja.",
            "Od pre {d} temperatura do {t} C, izražena malaksalost, bol iza očiju i suv kašalj. U kolektivu više obolelih od gripa.",
        ],
        findings: &[
            "Temperatura {t} C, puls {hr}/min, SpO2 {spo2}%. Ždrelo hiperemično. Nad plućima normalan disajni šum. Brzi antigenski test na influencu A pozitivan.",
            "Temperatura {t} C, konjunktive injicirane, ždrelo crveno. Pluća bez pripojenih šumova, disanje {rr}/min. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Oseltamivir 75 mg dva puta dnevno 5 dana, paracetamol 500 mg po potrebi, mirovanje i hidratacija. Bolovanje {sick} dana.",
            "Simptomatska terapija, ibuprofen 400 mg po potrebi, obilna hidratacija. Kontrola ako se javi otežano disanje ili temperatura traje duže od četiri dana.",
        ],
    },
    Dx {
        code: "U07.1",
        genitive: "kovida",
        weight: 4.0,
        fever: Some((37.5, 39.2)),
        days: (2, 5),
        respiratory: true,
        note: "",
        anamnesis: &[
            "Temperatura do {t} C, suv kašalj, gubitak čula ukusa i mirisa {d}. Kontakt sa obolelim u porodici.",
            "Malaksalost, glavobolja i bolovi u mišićima od pre {d}, temperatura do {t} C. Kućni test pozitivan.",
        ],
        findings: &[
            "Temperatura {t} C, SpO2 {spo2}%, disanje {rr}/min, puls {hr}/min. Nad plućima normalan disajni šum. Antigenski test na SARS-CoV-2 pozitivan.",
            "SpO2 {spo2}%, temperatura {t} C. Ždrelo hiperemično, pluća auskultatorno bez pripojenih šumova. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Izolacija, simptomatska terapija: paracetamol 500 mg po potrebi, hidratacija. Merenje saturacije kod kuće, javiti se ako SpO2 padne ispod 94%.",
            "Kućno lečenje, mirovanje, antipiretici po potrebi. Telefonska kontrola za tri dana.",
        ],
    },
    Dx {
        code: "L30.9",
        genitive: "dermatitisa",
        weight: 5.0,
        fever: None,
        days: (3, 30),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Svrab i crvenilo kože podlaktica {d}, bez jasne veze sa hranom ili lekovima. Ranije slične promene.",
            "Osip na šakama {d}, pojačan posle kontakta sa sredstvima za čišćenje. Svrab noću.",
        ],
        findings: &[
            "Na koži podlaktica eritematozne, blago ljuspaste promene sa tragovima češanja. Bez znakova sekundarne infekcije.",
            "Na dorzumu šaka eritem, suvoća i fisure kože, bez sekrecije. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Lokalno metilprednizolon aceponat krema jednom dnevno 7 dana, emolijensi dva puta dnevno. Desloratadin 5 mg uveče.",
            "Izbegavanje iritansa, zaštitne rukavice. Hidrokortizon krema 1% dva puta dnevno 7 dana, zatim emolijens. Kontrola za dve nedelje.",
        ],
    },
    Dx {
        code: "K21.9",
        genitive: "gastroezofagealne refluksne bolesti",
        weight: 5.0,
        fever: None,
        days: (14, 90),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Gorušica i vraćanje kiseline u usta, naročito noću i posle obilnih obroka, unazad {d}. Povremeno suv kašalj.",
            "Pečenje iza grudne kosti posle jela i pri ležanju {d}. Negira otežano gutanje i gubitak telesne mase.",
        ],
        findings: &[
            "Trbuh mek, blago osetljiv u epigastrijumu. Srce i pluća uredni. TA {sys}/{dia} mmHg, puls {hr}/min. EKG: sinusni ritam, bez ishemijskih promena.",
            "Uredan fizikalni nalaz. Indeks telesne mase {bmi} kg/m2, TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Pantoprazol 40 mg ujutru pre doručka 8 nedelja. Poslednji obrok tri sata pre spavanja, uzdignuto uzglavlje, redukcija telesne mase.",
            "Esomeprazol 20 mg jednom dnevno 4 nedelje, antacid po potrebi. Izbegavati kafu, alkohol i začinjenu hranu. Kontrola za mesec dana.",
        ],
    },
    // Chronic conditions: drawn into patient profiles, not as acute visits.
    Dx {
        code: "I10",
        genitive: "hipertenzije",
        weight: 0.0,
        fever: None,
        days: (3, 14),
        respiratory: false,
        note: "TA {sys}/{dia} mmHg.",
        anamnesis: &[
            "Kontrolni pregled zbog povišenog krvnog pritiska. Kućne vrednosti do {sys}/{dia} mmHg, povremeno glavobolja u potiljku. Terapiju uzima redovno.",
            "Dolazi radi kontrole pritiska i propisivanja terapije. Bez bolova u grudima i gušenja. Kućna merenja oko {sys}/{dia} mmHg.",
            "Unazad {d} više vrednosti pritiska, vrtoglavica i zujanje u ušima. Terapiju ne uzima redovno.",
        ],
        findings: &[
            "TA {sys}/{dia} mmHg na obe ruke, puls {hr}/min, ritmičan. Srčani tonovi jasni, bez šumova. Pluća uredna, bez otoka potkolenica.",
            "TA {sys}/{dia} mmHg, srčana akcija ritmična, frekvence {hr}/min. EKG: sinusni ritam, znaci hipertrofije leve komore. Potkolenice bez otoka.",
        ],
        therapy: &[
            "Nastavlja ramipril 5 mg ujutru i amlodipin 5 mg uveče. Smanjen unos soli, redovna fizička aktivnost. Kontrola za mesec dana sa dnevnikom pritiska.",
            "Korekcija terapije: perindopril/indapamid 5/1.25 mg jednom dnevno. Lipidni status i kreatinin pre sledeće kontrole.",
            "Bisoprolol 5 mg ujutru uz postojeću terapiju, merenje pritiska dva puta dnevno. Kontrola za dve nedelje.",
        ],
    },
    Dx {
        code: "E11.9",
        genitive: "šećerne bolesti tip 2",
        weight: 0.0,
        fever: None,
        days: (7, 30),
        respiratory: false,
        note: "Glikemija {glu} mmol/L.",
        anamnesis: &[
            "Kontrola šećerne bolesti. Glikemije našte kod kuće oko {glu} mmol/L. Bez hipoglikemija, negira žeđ i učestalo mokrenje.",
            "Redovna kontrola dijabetesa, dijetu ne sprovodi dosledno. Glikemije našte između {glu} i {glu2} mmol/L.",
        ],
        findings: &[
            "Glikemija našte {glu} mmol/L, HbA1c {hba1c}%. TA {sys}/{dia} mmHg. Stopala bez ulceracija, periferni pulsevi palpabilni.",
            "Glikemija {glu} mmol/L. Indeks telesne mase {bmi} kg/m2, TA {sys}/{dia} mmHg. Monofilament test uredan obostrano.",
        ],
        therapy: &[
            "Nastavlja metformin 1000 mg dva puta dnevno uz dijabetesnu dijetu. Kontrola HbA1c za tri meseca, pregled očnog dna jednom godišnje.",
            "Metformin 1000 mg dva puta dnevno, dodat gliklazid 60 mg ujutru. Samokontrola glikemije, edukacija o ishrani. Kontrola za mesec dana.",
        ],
    },
    Dx {
        code: "E78.0",
        genitive: "hiperholesterolemije",
        weight: 0.0,
        fever: None,
        days: (7, 30),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Dolazi sa nalazom lipidnog statusa. Bez bolova u grudima. Ishrana bogata mastima, fizička aktivnost retka.",
            "Kontrola povišenog holesterola, statin uzima redovno, bez bolova u mišićima.",
        ],
        findings: &[
            "Ukupni holesterol {chol} mmol/L, LDL {ldl} mmol/L, trigliceridi {tg} mmol/L. TA {sys}/{dia} mmHg.",
            "Lipidni status: holesterol {chol} mmol/L, LDL {ldl} mmol/L. Bez ksantelazmi. TA {sys}/{dia} mmHg, puls {hr}/min.",
        ],
        therapy: &[
            "Atorvastatin 20 mg uveče, higijensko-dijetetski režim, redovna fizička aktivnost. Kontrola lipida i transaminaza za tri meseca.",
            "Rosuvastatin 10 mg jednom dnevno, mediteranski način ishrane. Kontrolni lipidni status za šest nedelja.",
        ],
    },
    Dx {
        code: "F41.1",
        genitive: "generalizovanog anksioznog poremećaja",
        weight: 0.0,
        fever: None,
        days: (14, 90),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Unazad nekoliko meseci napetost, zabrinutost, nesanica i lupanje srca, pojačano u stresnim situacijama na poslu.",
            "Kontrola zbog anksioznih tegoba. San bolji, i dalje povremeno osećaj stezanja u grudima i nemir.",
        ],
        findings: &[
            "Svest očuvana, orijentacija potpuna. Psihomotorni nemir, afekat anksiozan. TA {sys}/{dia} mmHg, puls {hr}/min. EKG uredan.",
            "Uredan somatski nalaz. TA {sys}/{dia} mmHg, puls {hr}/min, ritmičan. Bez suicidalnih ideja.",
        ],
        therapy: &[
            "Sertralin 50 mg ujutru, tehnike relaksacije. Uput za psihijatra radi procene. Kontrola za četiri nedelje.",
            "Nastavlja escitalopram 10 mg jednom dnevno. Savetovanje o higijeni spavanja, redovna fizička aktivnost.",
        ],
    },
    Dx {
        code: "J45.9",
        genitive: "astme",
        weight: 0.0,
        fever: None,
        days: (2, 10),
        respiratory: true,
        note: "SpO2 {spo2}%.",
        anamnesis: &[
            "Pogoršanje astme unazad {d}, noćni kašalj i zviždanje u grudima, salbutamol koristi češće nego ranije.",
            "Redovna kontrola astme. Tegobe dobro kontrolisane, salbutamol retko koristi, spava bez noćnih buđenja.",
        ],
        findings: &[
            "SpO2 {spo2}%, disanje {rr}/min. Nad plućima obostrano difuzni zvižduci, produžen ekspirijum. PEF {pef} L/min.",
            "Pluća auskultatorno uredna, SpO2 {spo2}%. PEF {pef} L/min. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Budezonid/formoterol 160/4.5 mcg dva puta dnevno, salbutamol po potrebi. Prednizon 40 mg ujutru 5 dana. Kontrola za nedelju dana.",
            "Nastavlja inhalacioni kortikosteroid u istoj dozi, salbutamol po potrebi. Izbegavati poznate alergene, preporučena vakcina protiv gripa.",
        ],
    },
    Dx {
        code: "M17.9",
        genitive: "artroze kolena",
        weight: 0.0,
        fever: None,
        days: (5, 30),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Bol u kolenima pri hodu i penjanju uz stepenice, jutarnja ukočenost kraća od pola sata. Tegobe traju godinama, jače poslednjih {d}.",
            "Bol i otok desnog kolena {d}, škripanje pri pokretima.",
        ],
        findings: &[
            "Kolena bez crvenila, krepitacije pri pasivnim pokretima, fleksija bolno ograničena. TA {sys}/{dia} mmHg.",
            "Desno koleno blago otečeno, bez izliva i lokalne toplote, krepitacije pri pokretima. Hod antalgičan.",
        ],
        therapy: &[
            "Paracetamol 1000 mg do tri puta dnevno, lokalno diklofenak gel. Redukcija telesne mase, vežbe za jačanje kvadricepsa. Uput za fizijatra.",
            "Ibuprofen 400 mg po potrebi posle jela, krioterapija, poštedni režim. Rendgen oba kolena, kontrola sa nalazom.",
        ],
    },
    Dx {
        code: "I25.9",
        genitive: "hronične ishemijske bolesti srca",
        weight: 0.0,
        fever: None,
        days: (3, 14),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Hronična koronarna bolest, redovna kontrola. Angina pri većem naporu, nitroglicerin koristi retko. Bez gušenja noću.",
            "Povremeno stezanje u grudima pri brzom hodu, prolazi na mirovanje za nekoliko minuta. Terapiju uzima redovno.",
        ],
        findings: &[
            "TA {sys}/{dia} mmHg, puls {hr}/min, ritmičan. Srčani tonovi tiši, bez šumova. Pluća bez zastojnih promena, bez otoka. EKG: sinusni ritam, bez akutnih ishemijskih promena.",
            "Srčana akcija ritmična, {hr}/min, TA {sys}/{dia} mmHg. Potkolenice bez otoka. EKG bez promena u odnosu na prethodni.",
        ],
        therapy: &[
            "Nastavlja acetilsalicilnu kiselinu 100 mg, bisoprolol 5 mg, atorvastatin 40 mg i nitroglicerin sprej po potrebi. Kontrola kod kardiologa prema planu.",
            "Terapija bez promena. Savet o umerenoj fizičkoj aktivnosti i prestanku pušenja. Kontrola za tri meseca, ranije po potrebi.",
        ],
    },
    Dx {
        code: "E03.9",
        genitive: "hipotireoze",
        weight: 0.0,
        fever: None,
        days: (14, 60),
        respiratory: false,
        note: "",
        anamnesis: &[
            "Kontrola hipotireoze. Lako se zamara, oseća hladnoću, bez drugih tegoba. Levotiroksin uzima ujutru našte.",
            "Dolazi sa nalazom hormona štitaste žlezde. Opšte stanje dobro, telesna masa stabilna.",
        ],
        findings: &[
            "TSH {tsh} mIU/L, FT4 {ft4} pmol/L. Štitasta žlezda nije uvećana. Puls {hr}/min, TA {sys}/{dia} mmHg.",
            "Koža suva, štitasta žlezda palpatorno bez čvorova. TSH {tsh} mIU/L. TA {sys}/{dia} mmHg.",
        ],
        therapy: &[
            "Levotiroksin {lt4} mcg ujutru našte, pola sata pre doručka. Kontrola TSH za šest nedelja.",
            "Nastavlja dosadašnju dozu levotiroksina. Kontrola hormona štitaste žlezde za šest meseci.",
        ],
    },
];

/// The diagnosis with `code`.
fn dx(code: &str) -> &'static Dx {
    DIAGNOSES
        .iter()
        .find(|d| d.code == code)
        .expect("a diagnosis of the table")
}

/// Values a report's texts are filled with.
struct Vals {
    t: f64,
    sys: i64,
    dia: i64,
    hr: i64,
    rr: i64,
    spo2: i64,
    glu: f64,
    glu2: f64,
    hba1c: f64,
    chol: f64,
    ldl: f64,
    tg: f64,
    tsh: f64,
    ft4: f64,
    lt4: i64,
    pef: i64,
    bmi: f64,
    d: i64,
    sick: i64,
}

impl Vals {
    fn get(&self, key: &str) -> String {
        match key {
            "t" => format!("{:.1}", self.t),
            "sys" => self.sys.to_string(),
            "dia" => self.dia.to_string(),
            "hr" => self.hr.to_string(),
            "rr" => self.rr.to_string(),
            "spo2" => self.spo2.to_string(),
            "glu" => format!("{:.1}", self.glu),
            "glu2" => format!("{:.1}", self.glu2),
            "hba1c" => format!("{:.1}", self.hba1c),
            "chol" => format!("{:.1}", self.chol),
            "ldl" => format!("{:.1}", self.ldl),
            "tg" => format!("{:.1}", self.tg),
            "tsh" => format!("{:.1}", self.tsh),
            "ft4" => format!("{:.1}", self.ft4),
            "lt4" => self.lt4.to_string(),
            "pef" => self.pef.to_string(),
            "bmi" => format!("{:.1}", self.bmi),
            "d" => days(self.d),
            "sick" => self.sick.to_string(),
            other => panic!("unknown placeholder {{{other}}} in a demo text"),
        }
    }
}

/// `n dana`, or `n dan` for 21, 31, ... as Serbian counts days.
fn days(n: i64) -> String {
    let noun = if n % 10 == 1 && n % 100 != 11 {
        "dan"
    } else {
        "dana"
    };
    format!("{n} {noun}")
}

/// `template` with every `{key}` replaced by its value.
fn fill(template: &str, vals: &Vals) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let close = open + rest[open..].find('}').expect("a closed placeholder");
        out.push_str(&vals.get(&rest[open + 1..close]));
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Patients
// ---------------------------------------------------------------------------

/// A home-monitored patient who gets worse over the last days.
struct Deterioration {
    /// Days before today when it starts.
    onset: u32,
    /// Temperature reached today.
    fever: f64,
    /// What the doctor diagnosed when it started.
    dx: &'static Dx,
}

impl Deterioration {
    /// 0 before the onset, rising to 1 today.
    fn severity(&self, day: u32) -> f64 {
        if day > self.onset {
            0.0
        } else {
            f64::from(self.onset - day + 1) / f64::from(self.onset + 1)
        }
    }
}

/// What stays the same about a patient.
struct Profile {
    /// Chronic diagnoses, most significant first.
    chronic: Vec<&'static Dx>,
    diabetic: bool,
    /// Relative number of visits.
    visits: f64,
    sys: f64,
    dia: f64,
    hr: f64,
    rr: f64,
    temp: f64,
    spo2: f64,
    /// Fasting glucose, mmol/L.
    glucose: f64,
    bmi: f64,
    hba1c: f64,
    chol: f64,
    ldl: f64,
    tg: f64,
    tsh: f64,
    ft4: f64,
    lt4: i64,
    pef: i64,
    /// Whether a daily vital-sign series is recorded.
    monitored: bool,
    deterioration: Option<Deterioration>,
}

impl Profile {
    fn new(seed: u64, i: usize, vitals_days: u32) -> Profile {
        let mut rng = Rng::stream(seed, Stream::Patient, i as u64);
        // Adults registered with a chosen doctor; the old visit most.
        let band = rng.weighted(&[25.0, 25.0, 27.0, 23.0]);
        let age = [(18, 34), (35, 49), (50, 64), (65, 90)][band];
        let age = rng.int(age);
        let by_age = |p: [f64; 4]| p[band];

        let hypertension = rng.chance(by_age([0.05, 0.2, 0.45, 0.65]));
        let diabetic =
            rng.chance(by_age([0.01, 0.06, 0.14, 0.2]) * if hypertension { 1.5 } else { 1.0 });
        let lipids = rng.chance(by_age([0.05, 0.15, 0.25, 0.3]));
        let ischaemic = age >= 50 && rng.chance(if hypertension { 0.18 } else { 0.05 });
        let knee = age >= 50 && rng.chance(by_age([0.0, 0.0, 0.1, 0.25]));
        let asthma = rng.chance(0.06);
        let thyroid = rng.chance(0.06);
        let anxiety = rng.chance(0.07);
        let chronic: Vec<&'static Dx> = [
            (ischaemic, "I25.9"),
            (hypertension, "I10"),
            (diabetic, "E11.9"),
            (lipids, "E78.0"),
            (asthma, "J45.9"),
            (thyroid, "E03.9"),
            (knee, "M17.9"),
            (anxiety, "F41.1"),
        ]
        .into_iter()
        .filter(|(has, _)| *has)
        .map(|(_, code)| dx(code))
        .collect();

        let (sys, dia) = if hypertension {
            (rng.range((135.0, 162.0)), rng.range((84.0, 98.0)))
        } else {
            (
                rng.range((108.0, 128.0)) + (age - 18) as f64 * 0.15,
                rng.range((68.0, 82.0)),
            )
        };
        let hr = if ischaemic {
            rng.range((56.0, 68.0)) // on a beta blocker
        } else {
            rng.range((62.0, 84.0))
        };
        let spo2 = if asthma || age >= 75 {
            rng.range((94.5, 97.0))
        } else {
            rng.range((96.0, 99.0))
        };
        let glucose = if diabetic {
            rng.range((6.8, 10.5))
        } else {
            rng.range((4.5, 5.8))
        };
        let hba1c = if diabetic {
            4.0 + 0.45 * glucose + rng.noise(0.4)
        } else {
            rng.range((4.8, 5.7))
        };
        let chol = if lipids {
            rng.range((6.2, 8.2))
        } else {
            rng.range((4.2, 5.6))
        };
        let monitored = rng.chance(if chronic.is_empty() { 0.15 } else { 0.35 });
        let mut profile = Profile {
            diabetic,
            visits: 2.0 + 3.0 * chronic.len() as f64 + if age >= 65 { 2.0 } else { 0.0 },
            sys,
            dia,
            hr,
            rr: rng.range((12.0, 17.0)),
            temp: rng.range((36.3, 36.9)),
            spo2,
            glucose,
            bmi: rng.range((21.0, 27.0)) + if diabetic || hypertension { 4.0 } else { 0.0 },
            hba1c,
            chol,
            ldl: chol * rng.range((0.6, 0.68)),
            tg: rng.range((0.9, 2.8)),
            tsh: rng.range((0.8, 8.5)),
            ft4: rng.range((9.0, 16.0)),
            lt4: rng.pick(&[50, 75, 88, 100, 125]),
            pef: rng.int((25, 45)) * 10,
            chronic,
            monitored,
            deterioration: None,
        };
        // A few monitored patients get worse over the last days; at least
        // patient 0 when the series is long enough to show it.
        let max_onset = vitals_days.saturating_sub(1).min(7);
        if monitored && max_onset >= 3 && (i == 0 || rng.chance(0.1)) {
            profile.deterioration = Some(Deterioration {
                onset: rng.int((3, i64::from(max_onset))) as u32,
                fever: rng.range((38.6, 39.4)),
                dx: dx(rng.pick(&["J20.9", "J10.1", "U07.1"])),
            });
        } else if i == 0 && max_onset >= 3 {
            profile.monitored = true;
            profile.deterioration = Some(Deterioration {
                onset: max_onset.min(5),
                fever: 39.0,
                dx: dx("J10.1"),
            });
        }
        profile
    }

    /// Vital signs on `day` (days before today), with day-to-day noise.
    fn reading(&self, day: u32, rng: &mut Rng) -> Reading {
        let (s, fever) = self
            .deterioration
            .as_ref()
            .map_or((0.0, self.temp), |d| (d.severity(day), d.fever));
        Reading {
            hr: (self.hr + rng.noise(7.0) + 38.0 * s).clamp(40.0, 180.0),
            rr: (self.rr + rng.noise(2.0) + 11.0 * s).clamp(8.0, 40.0),
            temp: (self.temp + rng.noise(0.3) + (fever - self.temp) * s).clamp(35.5, 41.0),
            spo2: (self.spo2 + rng.noise(1.5) - 8.0 * s).clamp(80.0, 100.0),
            sys: (self.sys + rng.noise(10.0) - 22.0 * s).clamp(85.0, 220.0),
            dia: (self.dia + rng.noise(6.0) - 10.0 * s).clamp(45.0, 130.0),
            glucose: (self.glucose + rng.noise(1.2) + if self.diabetic { 2.5 * s } else { 0.0 })
                .clamp(3.0, 25.0),
        }
    }
}

/// One set of vital signs.
struct Reading {
    hr: f64,
    rr: f64,
    temp: f64,
    spo2: f64,
    sys: f64,
    dia: f64,
    glucose: f64,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round(x: f64) -> i64 {
    x.round() as i64
}

// ---------------------------------------------------------------------------
// Reports
// ---------------------------------------------------------------------------

/// Appends `scale.reports` medical reports.
fn reports(
    seed: u64,
    scale: Scale,
    cal: &Calendar,
    patients: &[String],
    profiles: &[Profile],
    out: &mut Vec<Timed>,
) {
    let mut rng = Rng::stream(seed, Stream::Reports, 0);
    let mut made = 0;
    // The deteriorating patients saw their doctor the day after it began.
    for (i, p) in profiles.iter().enumerate() {
        let Some(det) = &p.deterioration else {
            continue;
        };
        if made == scale.reports {
            return;
        }
        let day = det.onset - 1;
        let mut diagnoses = vec![det.dx];
        if let Some(c) = p.chronic.first() {
            diagnoses.push(*c);
        }
        let mut reading = p.reading(day, &mut rng);
        reading.temp = reading.temp.max(rng.range((37.4, 37.9)));
        let mut vals = visit_vals(&mut rng, p, det.dx, &reading);
        vals.d = 2;
        let doctor = i % scale.doctors;
        out.push(report(
            &mut rng,
            cal,
            doctor,
            &patients[i],
            &diagnoses,
            &vals,
            day,
        ));
        made += 1;
    }
    let weights: Vec<f64> = profiles.iter().map(|p| p.visits).collect();
    while made < scale.reports {
        let i = rng.weighted(&weights);
        let p = &profiles[i];
        let day = clinic_day(&mut rng, cal);
        if p.deterioration.as_ref().is_some_and(|d| day <= d.onset) {
            // Its last days belong to the illness that is getting worse.
            continue;
        }
        let diagnoses = visit_diagnoses(&mut rng, p, cal.month(day));
        let mut reading = p.reading(day, &mut rng);
        if let Some(range) = diagnoses[0].fever {
            reading.temp = rng.range(range);
            reading.hr += (reading.temp - 37.0).max(0.0) * 10.0;
            reading.rr += (reading.temp - 37.0).max(0.0) * 2.0;
        }
        if diagnoses[0].respiratory {
            reading.spo2 -= rng.range((0.0, 3.0));
        }
        let vals = visit_vals(&mut rng, p, diagnoses[0], &reading);
        let doctor = i % scale.doctors;
        out.push(report(
            &mut rng,
            cal,
            doctor,
            &patients[i],
            &diagnoses,
            &vals,
            day,
        ));
        made += 1;
    }
}

/// A day within the report window on which the centre sees patients:
/// fewer on Saturdays, few on Sundays.
fn clinic_day(rng: &mut Rng, cal: &Calendar) -> u32 {
    loop {
        let day = rng.below(u64::from(REPORT_WINDOW_DAYS)) as u32;
        let keep = match cal.weekday(day) {
            5 => 0.3,
            6 => 0.08,
            _ => 1.0,
        };
        if rng.chance(keep) {
            return day;
        }
    }
}

/// The diagnoses of one visit, most significant first: a control of a
/// chronic condition, or an acute illness, sometimes with the patient's
/// chronic conditions beside it.
fn visit_diagnoses(rng: &mut Rng, p: &Profile, month: i64) -> Vec<&'static Dx> {
    let mut out: Vec<&'static Dx> = Vec::with_capacity(3);
    if !p.chronic.is_empty() && rng.chance(0.45) {
        out.push(rng.pick(&p.chronic));
    } else {
        let winter = matches!(month, 11 | 12 | 1 | 2 | 3);
        let weights: Vec<f64> = DIAGNOSES
            .iter()
            .map(|d| match d.code {
                "J10.1" if winter => d.weight * 2.5,
                "J10.1" => d.weight * 0.2,
                "J06.9" | "J20.9" | "U07.1" if winter => d.weight * 1.3,
                _ => d.weight,
            })
            .collect();
        out.push(&DIAGNOSES[rng.weighted(&weights)]);
    }
    // One or two of the chronic conditions may be recorded beside it.
    if rng.chance(0.35) {
        add_chronic(rng, p, &mut out);
        if out.len() == 2 && rng.chance(0.3) {
            add_chronic(rng, p, &mut out);
        }
    }
    out
}

/// Adds one of the patient's chronic diagnoses that `out` lacks, if any.
fn add_chronic(rng: &mut Rng, p: &Profile, out: &mut Vec<&'static Dx>) {
    let rest: Vec<&'static Dx> = p
        .chronic
        .iter()
        .copied()
        .filter(|c| !out.iter().any(|d| d.code == c.code))
        .collect();
    if !rest.is_empty() {
        out.push(rng.pick(&rest));
    }
}

/// The values of one visit's texts.
fn visit_vals(rng: &mut Rng, p: &Profile, primary: &Dx, r: &Reading) -> Vals {
    let glu = round1(if p.diabetic {
        p.glucose + rng.noise(1.0)
    } else {
        r.glucose
    });
    Vals {
        t: round1(r.temp),
        sys: round(r.sys),
        dia: round(r.dia),
        hr: round(r.hr.clamp(40.0, 180.0)),
        rr: round(r.rr.clamp(8.0, 40.0)),
        spo2: round(r.spo2.clamp(80.0, 100.0)),
        glu,
        glu2: round1(glu + rng.range((1.2, 2.8))),
        hba1c: p.hba1c,
        chol: p.chol,
        ldl: p.ldl,
        tg: p.tg,
        tsh: p.tsh,
        ft4: p.ft4,
        lt4: p.lt4,
        pef: p.pef,
        bmi: p.bmi,
        d: rng.int(primary.days),
        sick: rng.int((3, 7)),
    }
}

/// One medical report by `doctor` on `patient` (a pseudonym) on `day`.
fn report(
    rng: &mut Rng,
    cal: &Calendar,
    doctor: usize,
    patient: &str,
    diagnoses: &[&'static Dx],
    vals: &Vals,
    day: u32,
) -> Timed {
    let (primary, secondary) = diagnoses.split_first().expect("one diagnosis at least");
    let mut anamnesis = fill(rng.pick(primary.anamnesis), vals);
    let mut findings = fill(rng.pick(primary.findings), vals);
    let mut therapy = fill(rng.pick(primary.therapy), vals);
    if !secondary.is_empty() {
        let names: Vec<&str> = secondary.iter().map(|d| d.genitive).collect();
        let lead = if primary.weight == 0.0 {
            "Leči se i od"
        } else {
            "Od ranije se leči od"
        };
        anamnesis.push_str(&format!(" {lead} {}.", names.join(" i ")));
        for d in secondary {
            let head = d.note.split('{').next().unwrap_or_default();
            if !d.note.is_empty() && !findings.contains(head) {
                findings.push(' ');
                findings.push_str(&fill(d.note, vals));
            }
        }
        therapy.push_str(" Hroničnu terapiju nastavlja bez promena.");
    }
    let payload = json!({
        "patient": patient,
        "institution": INSTITUTION,
        "encounter_date": cal.date(day),
        "diagnoses": diagnoses.iter().map(|d| d.code).collect::<Vec<_>>(),
        "anamnesis": anamnesis,
        "findings": findings,
        "therapy": therapy,
    });
    Timed {
        // Surgery hours, 07:00 to 19:00.
        minute: 7 * 60 + rng.below(12 * 60) as u32,
        record: DemoRecord {
            doctor,
            kind: MEDICAL_REPORT,
            payload,
            day,
        },
    }
}

// ---------------------------------------------------------------------------
// Vital signs
// ---------------------------------------------------------------------------

/// Appends the daily series of the monitored patients: pulse, breathing
/// rate, temperature, saturation and blood pressure every morning, and
/// fasting glucose for diabetics.
fn vitals(
    seed: u64,
    scale: Scale,
    cal: &Calendar,
    patients: &[String],
    profiles: &[Profile],
    out: &mut Vec<Timed>,
) {
    for (i, p) in profiles.iter().enumerate().filter(|(_, p)| p.monitored) {
        let mut rng = Rng::stream(seed, Stream::Vitals, i as u64);
        let subject = format!("Patient/{}", patients[i]);
        let doctor = i % scale.doctors;
        for day in (0..scale.vitals_days as u32).rev() {
            let r = p.reading(day, &mut rng);
            let start = 6 * 60 + rng.below(150) as u32;
            let mut push = |offset: u32, payload: Value| {
                out.push(Timed {
                    minute: start + offset,
                    record: DemoRecord {
                        doctor,
                        kind: KIND_OBSERVATION,
                        payload,
                        day,
                    },
                });
            };
            let at = |offset: u32| cal.date_time(day, start + offset);
            // (minute, category, codings, value, unit, UCUM code)
            type Reading<'a> = (
                u32,
                &'a str,
                &'a [(&'a str, &'a str)],
                Value,
                &'a str,
                &'a str,
            );
            let glucose: Reading = (
                0,
                "laboratory",
                &[("15074-8", "Glucose [Moles/volume] in Blood")],
                json!(round1(r.glucose)),
                "mmol/L",
                "mmol/L",
            );
            let vitals: [Reading; 4] = [
                (
                    1,
                    "vital-signs",
                    &[("8867-4", "Heart rate")],
                    json!(round(r.hr)),
                    "beats/minute",
                    "/min",
                ),
                (
                    2,
                    "vital-signs",
                    &[("9279-1", "Respiratory rate")],
                    json!(round(r.rr)),
                    "breaths/minute",
                    "/min",
                ),
                (
                    3,
                    "vital-signs",
                    &[("8310-5", "Body temperature")],
                    json!(round1(r.temp)),
                    "C",
                    "Cel",
                ),
                (
                    4,
                    "vital-signs",
                    &[
                        (
                            "59408-5",
                            "Oxygen saturation in Arterial blood by Pulse oximetry",
                        ),
                        ("2708-6", "Oxygen saturation in Arterial blood"),
                    ],
                    json!(round(r.spo2)),
                    "%",
                    "%",
                ),
            ];
            for (minute, category, codings, value, unit, code) in
                p.diabetic.then_some(glucose).into_iter().chain(vitals)
            {
                push(
                    minute,
                    observation(
                        &subject,
                        &at(minute),
                        category,
                        codings,
                        quantity(value, unit, code),
                    ),
                );
            }
            push(
                5,
                blood_pressure(&subject, &at(5), round(r.sys), round(r.dia)),
            );
        }
    }
}

/// A valueQuantity in UCUM.
fn quantity(value: Value, unit: &str, code: &str) -> (&'static str, Value) {
    (
        "valueQuantity",
        json!({"value": value, "unit": unit, "system": UCUM, "code": code}),
    )
}

fn category(code: &str) -> Value {
    let display = if code == "laboratory" {
        "Laboratory"
    } else {
        "Vital Signs"
    };
    json!([{"coding": [{"system": OBSERVATION_CATEGORY, "code": code, "display": display}]}])
}

/// An Observation of `subject` at `at` with LOINC `codes` (code, display)
/// and one more element `(key, value)`.
fn observation(
    subject: &str,
    at: &str,
    cat: &str,
    codes: &[(&str, &str)],
    (key, value): (&str, Value),
) -> Value {
    let coding: Vec<Value> = codes
        .iter()
        .map(|(code, display)| json!({"system": LOINC, "code": code, "display": display}))
        .collect();
    let mut obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": category(cat),
        "code": {"coding": coding, "text": codes[0].1},
        "subject": {"reference": subject},
        "effectiveDateTime": at,
    });
    obs[key] = value;
    obs
}

/// A blood pressure panel: systolic and diastolic components.
fn blood_pressure(subject: &str, at: &str, sys: i64, dia: i64) -> Value {
    let component = |code: &str, display: &str, value: i64| {
        json!({
            "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
            "valueQuantity": {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"},
        })
    };
    observation(
        subject,
        at,
        "vital-signs",
        &[("85354-9", "Blood pressure panel with all children optional")],
        (
            "component",
            json!([
                component("8480-6", "Systolic blood pressure", sys),
                component("8462-4", "Diastolic blood pressure", dia),
            ]),
        ),
    )
}

// ---------------------------------------------------------------------------
// Public-health counts and the organ-donor registry
// ---------------------------------------------------------------------------

/// Districts of the demo's public-health reports, with their relative
/// populations (Pirot and Toplica are small, so their counts are small).
const DISTRICTS: [(&str, f64); 6] = [
    ("Grad Beograd", 8.0),
    ("Nisavski", 2.0),
    ("Jablanicki", 1.0),
    ("Pcinjski", 1.0),
    ("Toplicki", 0.4),
    ("Pirotski", 0.4),
];

/// Days of the demo's public-health counts, ending today.
pub(crate) const COUNT_DAYS: u32 = 60;

/// Daily epidemic counts (COVID-19, influenza and gastroenteritis, with an
/// influenza wave peaking three weeks ago) and influenza vaccinations by
/// age band, per district, for the last [`COUNT_DAYS`] days, plus one
/// correction of an earlier report. `(kind, payload)` in submission order.
pub(crate) fn public_health(seed: u64, today: &str) -> Vec<(&'static str, Value)> {
    let cal = Calendar::new(today);
    let mut rng = Rng::stream(seed, Stream::Counts, 0);
    let mut out = Vec::new();
    for day in (0..COUNT_DAYS).rev() {
        let date = cal.date(day);
        let wave = (-((f64::from(day) - 21.0) / 9.0).powi(2)).exp();
        for (region, size) in DISTRICTS {
            for (disease, base) in [("U07.1", 1.2), ("J11.1", 0.5 + 9.0 * wave), ("A09", 0.8)] {
                let mean = base * size;
                let new_cases = (mean + rng.noise(mean.sqrt() * 2.0 + 1.0)).max(0.0).round() as u64;
                let hospitalised = (new_cases as f64 * rng.range((0.05, 0.2))).round() as u64;
                let on_respirator = u64::from(hospitalised > 3 && rng.chance(0.3));
                let deaths = u64::from(on_respirator > 0 && rng.chance(0.2));
                out.push((
                    EPIDEMIC_REPORT,
                    json!({"date": date, "region": region, "disease": disease,
                        "new_cases": new_cases, "hospitalised": hospitalised,
                        "on_respirator": on_respirator, "deaths": deaths}),
                ));
            }
            for (band, uptake) in [
                ("18-29", 0.2),
                ("30-49", 0.4),
                ("50-64", 0.8),
                ("65-74", 1.6),
                ("75-84", 1.4),
                ("85+", 0.5),
            ] {
                let doses = (uptake * size * 2.0 * (1.0 + rng.noise(0.6)))
                    .max(0.0)
                    .round() as u64;
                out.push((
                    VACCINATION_REPORT,
                    json!({"date": date, "region": region, "vaccine": "J07BB02", "dose": 1,
                        "age_band": band, "doses": doses}),
                ));
            }
        }
    }
    // A late correction: three days ago Nis reported 4 COVID-19 cases too few.
    let date = cal.date(3);
    if let Some((_, first)) = out.iter().find(|(k, p)| {
        *k == EPIDEMIC_REPORT
            && p["date"] == date
            && p["region"] == "Nisavski"
            && p["disease"] == "U07.1"
    }) {
        let mut fixed = first.clone();
        fixed["new_cases"] = json!(first["new_cases"].as_u64().unwrap_or(0) + 4);
        out.push((EPIDEMIC_REPORT, fixed));
    }
    out
}

/// Organ-donor decisions of about one patient in six, each recorded by the
/// patient's chosen doctor: `(patient index, payload without the patient)`.
/// A few patients later withdraw their decision.
pub(crate) fn donor_decisions(seed: u64, patients: usize, today: &str) -> Vec<(usize, Value)> {
    let cal = Calendar::new(today);
    let mut rng = Rng::stream(seed, Stream::Donors, 0);
    let mut out = Vec::new();
    for p in 0..patients {
        if !rng.chance(1.0 / 6.0) {
            continue;
        }
        let date = cal.date(rng.below(300) as u32 + 30);
        let decision = match rng.index(4) {
            0 | 1 => json!({"decision": "opt_in_all", "date": date}),
            2 => {
                json!({"decision": "opt_in", "organs": ["kidneys", "liver", "corneas"], "date": date})
            }
            _ => json!({"decision": "opt_out", "date": date}),
        };
        out.push((p, decision));
        if rng.chance(0.1) {
            out.push((
                p,
                json!({"decision": "withdrawal", "date": cal.date(rng.below(20) as u32)}),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use medledger_health::records::check;

    const TODAY: &str = "2026-11-24";

    fn small() -> Scale {
        Scale {
            doctors: 3,
            patients: 60,
            reports: 250,
            vitals_days: 10,
        }
    }

    fn serialized(demo: &Demo) -> String {
        let records: Vec<Value> = demo
            .records
            .iter()
            .map(
                |r| json!({"doctor": r.doctor, "kind": r.kind, "day": r.day, "payload": r.payload}),
            )
            .collect();
        json!({
            "institution": demo.institution,
            "doctors": demo.doctors,
            "patients": demo.patients,
            "records": records,
        })
        .to_string()
    }

    /// Every string in `v`, keys included.
    fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::String(s) => out.push(s),
            Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
            Value::Object(m) => {
                for (k, x) in m {
                    out.push(k);
                    strings(x, out);
                }
            }
            _ => {}
        }
    }

    fn longest_digit_run(s: &str) -> usize {
        s.split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0)
    }

    fn assert_clean_text(s: &str) {
        assert!(longest_digit_run(s) < 9, "long digit run in {s:?}");
        assert!(!s.contains('@') && !s.contains('+'), "{s:?}");
        let lower = s.to_lowercase();
        for word in ["lbo", "osigur", "jmbg", "insur", "tel.", "mob."] {
            assert!(!lower.contains(word), "{word} in {s:?}");
        }
        assert!(!s.contains('{') && !s.contains('}'), "{s:?}");
    }

    #[test]
    fn same_seed_same_data_other_seed_other_patients() {
        let a = generate(7, small(), TODAY);
        let b = generate(7, small(), TODAY);
        assert_eq!(serialized(&a), serialized(&b));
        let c = generate(8, small(), TODAY);
        assert_ne!(serialized(&a), serialized(&c));
        let ours: HashSet<&String> = a.patients.iter().collect();
        assert!(c.patients.iter().all(|p| !ours.contains(p)));
        assert_eq!(ours.len(), a.patients.len(), "pseudonyms are distinct");
        // More reports leave the patients as they were.
        let more = generate(
            7,
            Scale {
                reports: 300,
                ..small()
            },
            TODAY,
        );
        assert_eq!(more.patients, a.patients);
    }

    #[test]
    fn every_record_passes_the_ledger_rules() {
        let scale = small();
        let demo = generate(42, scale, TODAY);
        let cal = Calendar::new(TODAY);
        let (mut reports, mut observations) = (0, 0);
        for r in &demo.records {
            assert!(r.doctor < demo.doctors.len());
            match check(r.kind, &r.payload) {
                Ok(_) => {}
                Err(e) => panic!("{e}: {}", r.payload),
            }
            let mut texts = Vec::new();
            strings(&r.payload, &mut texts);
            texts.iter().for_each(|s| assert_clean_text(s));
            if r.kind == MEDICAL_REPORT {
                reports += 1;
                assert_eq!(r.payload["institution"], demo.institution.as_str());
                assert_eq!(r.payload["encounter_date"], cal.date(r.day).as_str());
                assert!(r.day < REPORT_WINDOW_DAYS);
                let n = r.payload["diagnoses"].as_array().unwrap().len();
                assert!((1..=3).contains(&n));
                let patient = r.payload["patient"].as_str().unwrap();
                let i = demo.patients.iter().position(|p| p == patient).unwrap();
                assert_eq!(r.doctor, i % scale.doctors);
            } else {
                assert_eq!(r.kind, KIND_OBSERVATION);
                observations += 1;
                assert!((r.day as usize) < scale.vitals_days);
                let at = r.payload["effectiveDateTime"].as_str().unwrap();
                assert!(at.starts_with(&cal.date(r.day)), "{at}");
            }
        }
        assert_eq!(reports, scale.reports);
        // About a quarter of the patients, five or six readings a day.
        let monitored = observations / (5 * scale.vitals_days);
        assert!(
            (scale.patients / 10..=scale.patients / 2).contains(&monitored),
            "{observations} observations"
        );
        // Chronological order.
        assert!(demo.records.windows(2).all(|w| w[0].day >= w[1].day));
        assert_eq!(demo.institution, "Dom zdravlja Niš");
        assert_eq!(demo.doctors.len(), scale.doctors);
        assert_eq!(demo.patients.len(), scale.patients);
    }

    #[test]
    fn no_lbo_reaches_the_output() {
        for seed in [1, 2, 3] {
            let demo = generate(seed, small(), TODAY);
            let text = serialized(&demo);
            let lbos = patient_lbos(seed, small().patients);
            let key = pseudonym_key(seed);
            for (lbo, pseudonym) in lbos.iter().zip(&demo.patients) {
                assert_eq!(lbo.len(), 11);
                assert!(lbo.bytes().all(|b| b.is_ascii_digit()));
                // The hook is what made the pseudonyms.
                assert_eq!(&key.pseudonym(&Identifier::Lbo(lbo.clone())), pseudonym);
                assert!(!text.contains(lbo.as_str()));
            }
            assert!(longest_digit_run(&text) < 9);
        }
    }

    #[test]
    fn the_default_scale_looks_like_a_health_centre() {
        let demo = generate(2026, Scale::DEFAULT, TODAY);
        let mut counts = std::collections::HashMap::<String, usize>::new();
        let mut multi = 0;
        let mut reports = 0;
        for r in demo.records.iter().filter(|r| r.kind == MEDICAL_REPORT) {
            reports += 1;
            let d = r.payload["diagnoses"].as_array().unwrap();
            multi += usize::from(d.len() > 1);
            for c in d {
                *counts.entry(c.as_str().unwrap().to_owned()).or_default() += 1;
            }
        }
        assert_eq!(reports, Scale::DEFAULT.reports);
        assert_eq!(counts.len(), DIAGNOSES.len(), "{counts:?}");
        let top = counts.iter().max_by_key(|(_, n)| **n).unwrap().0;
        assert!(top == "J06.9" || top == "I10", "{counts:?}");
        assert!(multi > reports / 10 && multi < reports / 2, "{multi}");
        // Every report and observation passes.
        for r in &demo.records {
            check(r.kind, &r.payload).unwrap_or_else(|e| panic!("{e}: {}", r.payload));
        }
        // Someone deteriorates: low saturation and fever in the last days.
        let recent = |code: &str| {
            demo.records
                .iter()
                .filter(|r| r.day <= 1 && r.payload["code"]["coding"][0]["code"] == code)
                .filter_map(|r| r.payload["valueQuantity"]["value"].as_f64())
                .collect::<Vec<f64>>()
        };
        assert!(recent("59408-5").iter().any(|v| *v <= 92.0));
        assert!(recent("8310-5").iter().any(|v| *v >= 38.5));
        assert!(recent("9279-1").iter().any(|v| *v >= 21.0));
        assert!(recent("8867-4").iter().any(|v| *v >= 100.0));
        // Patient 0 deteriorates and saw the doctor when it began.
        assert!(demo.records.iter().any(|r| {
            r.kind == MEDICAL_REPORT
                && r.payload["patient"] == demo.patients[0].as_str()
                && (r.day as usize) < Scale::DEFAULT.vitals_days
                && ["J20.9", "J10.1", "U07.1"]
                    .contains(&r.payload["diagnoses"][0].as_str().unwrap())
        }));
        // Glucose for diabetics, in the laboratory category.
        assert!(demo.records.iter().any(|r| {
            r.payload["code"]["coding"][0]["code"] == "15074-8"
                && r.payload["category"][0]["coding"][0]["code"] == "laboratory"
        }));
    }

    #[test]
    fn every_template_fills_cleanly() {
        let vals = Vals {
            t: 38.5,
            sys: 150,
            dia: 95,
            hr: 88,
            rr: 18,
            spo2: 96,
            glu: 7.8,
            glu2: 9.6,
            hba1c: 7.4,
            chol: 6.9,
            ldl: 4.4,
            tg: 2.1,
            tsh: 6.2,
            ft4: 11.3,
            lt4: 75,
            pef: 350,
            bmi: 29.4,
            d: 5,
            sick: 5,
        };
        for d in DIAGNOSES {
            assert!(medledger_health::fhir::is_icd10(d.code), "{}", d.code);
            if d.weight == 0.0 {
                assert!(d.fever.is_none(), "{} is chronic", d.code);
            }
            for t in d
                .anamnesis
                .iter()
                .chain(d.findings)
                .chain(d.therapy)
                .chain([&d.note])
            {
                let text = fill(t, &vals);
                assert_clean_text(&text);
                let payload = json!({ "anamnesis": text });
                assert_eq!(medledger_health::pii::scan(&payload), Ok(()), "{text}");
            }
        }
        assert_eq!(DIAGNOSES.len(), 20);
        let codes: HashSet<&str> = DIAGNOSES.iter().map(|d| d.code).collect();
        assert_eq!(codes.len(), 20);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(Calendar::new("2026-01-02").date(2), "2025-12-31");
        assert_eq!(Calendar::new("2024-03-01").date(1), "2024-02-29");
        assert_eq!(Calendar::new("2023-03-01").date(1), "2023-02-28");
        assert_eq!(Calendar::new("2026-11-24").date(0), "2026-11-24");
        assert_eq!(days(2), "2 dana");
        assert_eq!(days(11), "11 dana");
        assert_eq!(days(21), "21 dan");
        // 2026-11-24 is a Tuesday.
        assert_eq!(Calendar::new("2026-11-24").weekday(0), 1);
        assert_eq!(Calendar::new("2026-11-24").weekday(2), 6);
        assert_eq!(
            Calendar::new("2026-11-24").date_time(3, 8 * 60 + 30),
            "2026-11-21T08:30:00Z"
        );
    }

    #[test]
    fn empty_scales() {
        let none = generate(
            1,
            Scale {
                doctors: 0,
                patients: 5,
                reports: 10,
                vitals_days: 3,
            },
            TODAY,
        );
        assert!(none.records.is_empty());
        assert_eq!(none.patients.len(), 5);
        let no_vitals = generate(
            1,
            Scale {
                vitals_days: 0,
                ..small()
            },
            TODAY,
        );
        assert!(no_vitals.records.iter().all(|r| r.kind == MEDICAL_REPORT));
        assert_eq!(no_vitals.records.len(), small().reports);
    }

    #[test]
    #[should_panic(expected = "YYYY-MM-DD")]
    fn a_bad_today_panics() {
        generate(1, small(), "24.11.2026");
    }
}
