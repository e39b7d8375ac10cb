"""Patterns for the PHI in notes other than names: IDs, phones, e-mails, URLs, IPs, dates, addresses, ages.

Each entry of :data:`PATTERNS` is (type, compiled regex, group holding the PHI). The patterns are written
for what clinicians type, not for tidy forms: any case, SSNs and phones with spaces, dots or slashes,
seven-digit local numbers and extensions, digits spelled out, e-mails written "name at host dot org",
dates in words ("the fourth of March", "March the 4th"), ordinals, month-year, day-first and year-first
orders, holidays with a year, street addresses with unit numbers, PO boxes, ZIP codes in text, ages over
89 in words ("ninety-two", "in her late nineties"), and record numbers after a label (MRN, Medicare/MBI,
health plan, member, policy, licence plate, VIN, device serial ...). Places (city and town names) come
from ``places.yaml`` and from residence contexts ("lives in ...") by :func:`place_spans`, and from the
GeoNames gazetteer ``places_world.yaml`` in a place context only ("from Kano, Nigeria", "in Utrecht",
"Chinle AZ 86503"). Also: bare month/day dates that are not scores or fractions ("12/3", not "2/6" or
"7/10"), Spanish/Portuguese/French dates in words, holidays without a year, IPv6, profile links without a
scheme (reference sites such as cdc.gov are not PHI), phones without a space after the area code, pager
and extension numbers after their label, ZIP+4, UK and Canadian postcodes, rural routes, and a flat or
unit written before the street. Every pattern is bounded so a note is scanned in linear time.
"""

from __future__ import annotations

import re
from functools import cache

from precimed.privacy.vocabulary import (
    CARDINAL_WORD,
    DAY_ORDINAL_WORD,
    common_words,
    fold,
    gazetteer,
    is_medical,
    lexicon_names,
    number_value,
    places,
    zipf,
)

MONTHS = (r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|"
          r"Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)")
MONTHS_I = rf"(?i:{MONTHS})"
_MONTH_FULL = r"(?:January|February|March|April|May|June|July|August|September|October|November|December)"
STATES = (r"(?:AL|AK|AZ|AR|CA|CO|CT|DE|DC|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|"
          r"NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|PR)")
STATE_NAMES = (r"(?:Alabama|Alaska|Arizona|Arkansas|California|Colorado|Connecticut|Delaware|Florida|Georgia|Hawaii|"
               r"Idaho|Illinois|Indiana|Iowa|Kansas|Kentucky|Louisiana|Maine|Maryland|Massachusetts|Michigan|"
               r"Minnesota|Mississippi|Missouri|Montana|Nebraska|Nevada|New Hampshire|New Jersey|New Mexico|"
               r"New York|North Carolina|North Dakota|Ohio|Oklahoma|Oregon|Pennsylvania|Rhode Island|"
               r"South Carolina|South Dakota|Tennessee|Texas|Utah|Vermont|Virginia|Washington|West Virginia|"
               r"Wisconsin|Wyoming|Puerto Rico)")
STREET_SUFFIX = (r"(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|Terrace|"
                 r"Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Row|Alley|Crescent|Close|Loop|Pike|"
                 r"Turnpike|Plaza|Path|Run|Walk|Terr|Heights|Hts|Crescent|Cres|Mews|Gardens|Gdns|Green|Commons)")
_UNIT = r"(?:apt|apartment|unit|suite|ste|flat|fl|floor|room|rm|bldg|building|lot|#|no)"
_STREET_WORD = r"(?!(?i:and|or|the|with|to|at|on|in|of|for|by|from|pm|am|mg|mcg|mm|cm|ml|kg|mmhg|units?|tabs?|" \
               r"times|days?|weeks?|wks?|months?|mos?|years?|yrs?|hours?|hrs?|min|beats|puffs|saw|seen|was|is|" \
               r"had|has|per|x)\b)" \
               r"(?:\d+(?:st|nd|rd|th)|[^\W\d_][\w'-]*)"

# state abbreviations that follow a city ("Garden Grove, CA"); MD, PA, DO, OR, IN, ME, ID ... also end names or words
_CITY_STATES = (r"(?:AL|AK|AZ|AR|CA|CT|DC|FL|GA|IA|KS|KY|LA|MA|MI|MN|MS|MO|MT|NE|NV|NH|NJ|NM|NY|NC|ND|OH|RI|SC|SD|"
                r"TN|TX|UT|VT|VA|WA|WV|WI|WY|PR)")
EMAIL_RE = r"[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"
URL_RE = r"(?:https?://|www\.)[^\s<>\"'\])]+"
IPV4_RE = r"(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
SSN_RE = r"\d{3}([-. ])\d{2}\1\d{4}"
PHONE_RE = (r"(?:\+?1[ \t.\-/]?)?(?:\(\d{3}\)[ \t]?\d{3}[ \t.\-/]?|\d{3}[ \t.\-/]\d{3}[ \t.\-/])\d{4}"
            r"(?:[ \t]*,?[ \t]*(?i:x|ext\.?|extension)[ \t]*\d{1,6})?")
STREET_RE = (rf"\d{{1,6}}[A-Za-z]?(?:-\d{{1,5}})?(?:[ \t]+1/2|[ \t]?\u00bd)?[ \t]+"
             rf"(?:(?i:[NSEW]|north|south|east|west)\.?[ \t]+)?"
             rf"(?:{_STREET_WORD}(?:(?<=\b[A-Z])\.)?[ \t]+){{1,3}}(?i:{STREET_SUFFIX})\b"
             r"(?![ \t]*(?i:elevation|depression|segment|wave))\.?(?:[ \t]+(?:NE|NW|SE|SW|N|S|E|W)\b\.?)?"
             rf"(?:,?[ \t]*(?:(?i:{_UNIT})\.?[ \t]*#?[ \t]*[\w-]*\d[\w-]*|(?i:rear|front|back|upper|lower|"
             r"basement|side)[ \t]+(?i:unit|apt|apartment|house|cottage|entrance|building)\b))?")
CITY_STATE_ZIP_RE = (rf"(?:[A-Z][a-zA-Z]+[ \t]){{0,2}}[A-Z][a-zA-Z]+,[ \t]*(?:{STATES}|{STATE_NAMES})[ \t]+"
                     rf"\d{{5}}(?:-\d{{4}})?")

_DOT = r"(?:[ \t]*\.[ \t]*|[ \t]*[(\[{<]dot[)\]}>][ \t]*|[ \t]+dot[ \t]+)"
_AT = r"(?:[ \t]*@[ \t]*|[ \t]*[(\[{<]at[)\]}>][ \t]*|[ \t]+at[ \t]+)"
_TLD = r"(?:com|org|net|edu|gov|mil|io|co|us|uk|ca|de|fr|info|biz|me|health|email|mail)"
# bounded pieces (64 characters, four dots each side) keep the scan linear on "A. A. A. ..." or "a-a-a-..."
OBFUSCATED_EMAIL_RE = (rf"(?i:(?<![a-z0-9_%+.-])[a-z0-9_%+-]{{1,64}}(?:{_DOT}[a-z0-9_%+-]{{1,64}}){{0,4}}{_AT}"
                       rf"[a-z0-9-]{{1,64}}(?:{_DOT}[a-z0-9-]{{1,64}}){{0,4}}{_DOT}{_TLD}"
                       r"\b(?!/))")

_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine|\d)"
SPELLED_DIGITS_RE = rf"(?i:\b(?:{_DIGIT_WORD}[ \t,.-]+){{6,}}{_DIGIT_WORD}\b)"

_DAY = rf"(?:\d{{1,2}}(?i:st|nd|rd|th)?(?!\d)|(?i:{DAY_ORDINAL_WORD})\b)"
_YEAR = r"(?:\d{4}|'\d{2})"
HOLIDAYS = (r"(?i:christmas(?:[ \t]+(?:eve|day))?|xmas|thanksgiving(?:[ \t]+day)?|"
            r"new[ \t]+year'?s(?:[ \t]+(?:eve|day))?|"
            r"easter(?:[ \t]+sunday)?|independence[ \t]+day|fourth[ \t]+of[ \t]+july|july[ \t]+4th|labou?r[ \t]+day|"
            r"memorial[ \t]+day|veterans'?[ \t]+day|halloween|valentine'?s[ \t]+day|hanukkah|chanukah|diwali|"
            r"eid(?:[ \t]+al-(?:fitr|adha))?|ramadan|passover|yom[ \t]+kippur|rosh[ \t]+hashanah|"
            r"(?:lunar|chinese)[ \t]+new[ \t]+year|tet|kwanzaa|mother'?s[ \t]+day|father'?s[ \t]+day|"
            r"good[ \t]+friday|st\.?[ \t]+patrick'?s[ \t]+day|mlk[ \t]+day|presidents'?[ \t]+day|columbus[ \t]+day|"
            r"juneteenth|boxing[ \t]+day)")
_AGE_N = r"(?:9\d|1[0-2]\d)"
_AGE_WORDS = (r"(?i:ninety(?:[ \t-](?:one|two|three|four|five|six|seven|eight|nine))?|"
              rf"(?:(?:a|one)[ \t-])?hundred(?:[ \t-](?:and[ \t-])?(?:{CARDINAL_WORD})(?:[ \t-](?:one|two|three|four|"
              r"five|six|seven|eight|nine))?)?)")
_YEARS_OLD = r"(?i:[ \t]*-?[ \t]*(?:years?|yrs?|yr|y/o|y\.o\.|yo|y)(?:[ \t-]*(?:old|of[ \t]+age))?\b)"

_ID_LABEL = (
    r"(?i:\b(?:MRN|MR[ \t]?#|medical[ \t]+record(?:[ \t]+(?:number|no\.?|#))?|record[ \t]*#|acct\.?|account"
    r"(?:[ \t]+(?:number|no\.?|#))?|patient[ \t]+id|pt[ \t]+id|member[ \t]+(?:id|number|no\.?|#)|member|"
    r"subscriber[ \t]+(?:id|number|no\.?)|group[ \t]+(?:id|number|no\.?|#)|policy(?:[ \t]+(?:number|no\.?|#))?|"
    r"insurance[ \t]+(?:id|number|no\.?)|health[ \t]+plan(?:[ \t]+(?:id|number|no\.?|#|beneficiary[ \t]+number))?|"
    r"beneficiary[ \t]+(?:id|number|no\.?)|medicare(?:[ \t]+(?:number|no\.?|id|#|beneficiary[ \t]+identifier))?|"
    r"mbi|hicn|medicaid(?:[ \t]+(?:number|no\.?|id|#))?|licen[cs]e(?:[ \t]+(?:number|no\.?|#))?|"
    r"driver'?s[ \t]+licen[cs]e|dl|passport(?:[ \t]+(?:number|no\.?|#))?|SSN|social(?:[ \t]+security)?"
    r"(?:[ \t]+(?:number|no\.?|#))?|encounter(?:[ \t]+(?:number|no\.?|#))?|CSN|FIN|ID|VIN|vehicle"
    r"(?:[ \t]+identification)?[ \t]+(?:number|no\.?|id|#)|licen[cs]e[ \t]+plate|"
    r"plate(?:[ \t]+(?:number|no\.?|#))?|"
    r"tag[ \t]+(?:number|no\.?|#)|registration(?:[ \t]+(?:number|no\.?|#))?|serial(?:[ \t]+(?:number|no\.?|#))?|"
    r"S/N|SN|device[ \t]+(?:id|serial|number|no\.?)|(?:pacemaker|implant|icd|pump|device)[ \t]+serial|NPI|DEA|"
    r"certificate(?:[ \t]+(?:number|no\.?|#))?|accession(?:[ \t]+(?:number|no\.?|#))?|"
    r"claim(?:[ \t]+(?:number|no\.?|#))?|"
    r"case[ \t]+(?:number|no\.?|#)|badge(?:[ \t]+(?:number|no\.?|#))?|employee(?:[ \t]+(?:id|number))?|"
    r"staff[ \t]+(?:id|number|no\.?|#)|emp[ \t]*(?:id|#|no\.?)|interp(?:reter)?(?:[ \t]+(?:id|number|no\.?))?|"
    r"(?:auth(?:orization)?|confirmation|reference|ref|tracking|requisition|specimen|order|ticket|pin)"
    r"[ \t]*(?:number|no\.?|#|id))(?![a-z]))")
# an ID value: letters then digits, dashes inside, and up to two more upper-case chunks holding a digit ("XJH 884210")
# Spanish, Portuguese and French month names ("9 de marzo de 1958", "1er mars 2020", "12 de janeiro")
FOREIGN_MONTHS = (r"(?i:enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|setiembre|octubre|noviembre|"
                  r"diciembre|janeiro|fevereiro|mar[cç]o|maio|junho|julho|setembro|outubro|novembro|dezembro|"
                  r"janvier|f[ée]vrier|mars|avril|mai|juin|juillet|ao[uû]t|septembre|octobre|d[ée]cembre|"
                  r"januar|februar|m[äa]rz|juni|juli|oktober|dezember|gennaio|febbraio|aprile|maggio|giugno|"
                  r"luglio|settembre|ottobre|dicembre|januari|februari|maart|mei|augustus|"
                  r"січня|лютого|березня|квітня|травня|червня|липня|серпня|вересня|жовтня|листопада|грудня|"
                  r"января|февраля|марта|апреля|мая|июня|июля|августа|сентября|октября|ноября|декабря)")
FOREIGN_DATE_RE = (rf"(?<![\w.])\d{{1,2}}(?:er|º|°|o|\.)?[ \t]*(?:(?i:de)[ \t]+)?{FOREIGN_MONTHS}(?!\w)"
                   rf"(?:,?[ \t]+(?:(?i:de|del)[ \t]+)?\d{{4}}\b)?")
# East Asian dates: 2026年11月30日, 令和8年11月30日, 11月30日, 2026년 11월 30일
CJK_DATE_RE = (r"(?:(?:令和|平成|昭和|民國|民国)?\d{1,4}[ \t]?[年년][ \t]?)?"
               r"\d{1,2}[ \t]?[月월][ \t]?\d{1,2}[ \t]?[日일]"
               r"|(?:令和|平成|昭和)\d{1,2}年(?:\d{1,2}月)?")
# a letter-prefixed record number with hyphens, redacted whole with its prefix: "PA-88120455", "HCG-2026-118734",
# "S24-007731", "CT2612-004417", "TM-55018843-02" (five digits or more in all: not "COVID-19", "L4-L5")
PREFIXED_ID_RE = r"(?<![\w-])[A-Z]{1,4}\d{0,6}(?:-\d{1,4})?-\d{5,12}(?:-\d{1,4})?(?![\w-]|[.,]\d)"
# Brazilian and other two-digit area codes in parentheses: "(11) 91234-5678", "(21) 3456-7890"
BR_PHONE_RE = r"(?<![\w)])\(\d{2}\)[ \t]?9?\d{4}[ \t.-]\d{4}(?![\w-])"
# UK numbers with a trunk 0: "07700 900123", "0113 496 0271", "020 7946 0018"
UK_PHONE_RE = (r"(?<![\w.+/-])0(?:\d{4}[ \t]\d{6}|\d{3}[ \t]\d{3}[ \t]\d{4}|\d{2}[ \t]\d{4}[ \t]\d{4})"
               r"(?![\w/-]|\.\d)")
# counties, neighbourhoods and colonias: "Co. Galway", "County Kerry", "Col. Americana", "Colonia Roma", "Bairro Centro"
COUNTY_RE = (r"(?<!&[ \t])(?<!&)\b(?:Co\.|County|Col\.|Colonia|Bairro|Barrio|Jd\.|Jardim|Quartier)[ \t]+"
             r"(?:(?:de|del|da|do|dos|das|la|los|las)[ \t]+)?[A-Z\u00c0-\u00de][^\W\d_]{2,}"
             r"(?:[ \t]+[A-Z\u00c0-\u00de][^\W\d_]{2,})?")
# a town before its county: "Dingle, Co. Kerry", "Sugar Grove, Warren County"
TOWN_BEFORE_COUNTY_RE = (r"\b((?:[A-Z][^\W\d_]+[ \t]){0,2}[A-Z][^\W\d_]+),[ \t]*(?:(?:Co\.|County)[ \t]+[A-Z]|"
                         r"(?:[A-Z][^\W\d_]+[ \t]){1,2}County\b)")
# streets in other languages, house number before or after: "Rua das Flores, 233, apto 41", "1107 Rue Royale",
# "Calle Mayor 5", "Via Roma 12", "ul. Długa 7", "Straße des 17. Juni 4"
_FOREIGN_STREET = (r"(?:Rua|Rue|Calle|Carrer|Avenida|Avda\.|Av\.|Avenue|Via|Viale|Corso|Piazza|Largo|Travessa|Estrada|"
                   r"Rodovia|Praça|Alameda|Calzada|Camino|Paseo|Plaza|Chemin|Boulevard|Bd\.|Straße|Strasse|Str\.|"
                   r"ul\.|ulica|vul\.|вул\.|ул\.|Jalan|Jl\.|Calea|Strada|Stradă)")
_FOREIGN_NAME = (r"(?:(?:de|del|da|das|do|dos|di|della|delle|des|du|de[ \t]+la|la|le|les|los|las|der)"
                 r"[ \t]+){0,2}"
                 r"(?:\d{1,2}\.?[ \t]+)?[A-Z\u00c0-\u00de\u0400-\u042f][^\W\d_]+"
                 r"(?:[ \t]+[A-Z\u00c0-\u00de][^\W\d_]+){0,2}")
_HOUSE = r"\d{1,5}[A-Za-z]?(?:-\d{1,4})?"
_FOREIGN_UNIT = (r"(?:,?[ \t]*(?i:apto|apt|ap|apartamento|piso|dpto|depto|bloco|bl|casa|sala|andar|int|interior|"
                 r"étage|esc|puerta|pta|whg|app|appartement|kv|кв)\.?[ \t]*\d{1,4}[A-Za-z]?)*")
FOREIGN_STREET_RE = (rf"(?:\b{_HOUSE},?[ \t]+{_FOREIGN_STREET}[ \t]+{_FOREIGN_NAME}"
                     rf"|(?<!\w){_FOREIGN_STREET}[ \t]+{_FOREIGN_NAME},?[ \t]+(?:n[º°o]\.?[ \t]*)?{_HOUSE}\b)"
                     rf"{_FOREIGN_UNIT}")
# German and Dutch compound street names with the number after: "Kastanienallee 41", "Hauptstr. 5a", "Kerkstraat 12"
COMPOUND_STREET_RE = (r"\b[A-ZÄÖÜ][a-zäöüß]+(?:straße|strasse|str\.|allee|weg|gasse|platz|ring|damm|ufer|chaussee|"
                      r"straat|laan|gracht|plein|kade|vej|gade|gatan|vägen|veien|gata)[ \t]+\d{1,4}[a-z]?\b")
# a highway location: "Hwy 9", "Highway 17 near mile marker 41", "I-95 at exit 12", "Route 66"
HIGHWAY_RE = (r"\b(?:(?:Hwy|Highway|Route|Rte|Interstate|State[ \t]+Route|County[ \t]+Road|US)[ \t]?-?[ \t]?\d{1,4}"
              r"|I-\d{1,3})\b(?:[ \t]+(?:near|at|by|past)[ \t]+(?:mile[ \t]+(?:marker|post)|mm|exit)[ \t]+\d{1,4}\b)?")
# Japanese and Korean addresses in Latin letters: "2-14-7 Kita-ku", "Gangnam-gu", "Minato-ku", "Sapporo-shi"
ASIAN_ADDRESS_RE = (r"(?:\b\d{1,4}(?:-\d{1,4}){1,3},?[ \t]+)?\b[A-Z][a-z]{1,15}-(?:ku|shi|cho|machi|gun|mura|son|"
                    r"dong|gu|si|eup|myeon|ri|ro|gil)\b")
# an age over 89 in hyphenated words, standing alone: "Deng Majok ninety-nine per family", "Ruth, ninety-seven,"
AGE_WORDS_ALONE_RE = (r"(?i:\bninety-(?:one|two|three|four|five|six|seven|eight|nine)\b"
                      r"(?![ \t-]*(?:percent|%|mg|mcg|minutes|mins?|seconds|hours|days|weeks|months|mmhg|bpm|"
                      r"dollars|pounds|lbs?|kg|units|ml|cc|times|degrees|beats|breaths)\b))")
# IPv6: eight groups, or a "::" compression (checked for at least two groups and three colons by the caller)
_H = r"[0-9A-Fa-f]{1,4}"
IPV6_RE = rf"(?<![\w:])(?:{_H}(?::{_H}){{7}}|(?:{_H}(?::{_H}){{0,6}})?::(?:{_H}(?::{_H}){{0,6}})?)(?![\w:])"
# profile and fundraising sites written without a scheme ("facebook.com/ross.m"): a path after the domain
SOCIAL_URL_RE = (r"(?i:\b(?:www\.|m\.|mobile\.)?(?:facebook|fb|instagram|twitter|x|tiktok|linkedin|youtube|youtu|"
                 r"gofundme|venmo|cash\.app|paypal|reddit|pinterest|snapchat|threads|tumblr|medium|substack|"
                 r"caringbridge|mychart|patreon|onlyfans|myspace|vk|weibo|wa|t)\.(?:com|me|be|net|org|app|io|co)"
                 r"/[^\s<>\"'\])]+)")
# generic reference sites: a link to one of these is not about the patient
REFERENCE_DOMAINS = ("cdc.gov", "nih.gov", "who.int", "uptodate.com", "wikipedia.org", "medlineplus.gov",
                     "fda.gov", "mayoclinic.org", "cancer.gov", "ncbi.nlm.nih.gov", "nice.org.uk", "nhs.uk",
                     "clinicaltrials.gov", "cms.gov", "hhs.gov", "acog.org", "heart.org", "aafp.org",
                     "medscape.com", "drugs.com", "epocrates.com", "cochrane.org", "pubmed.gov")
# UK postcodes ("EH10 4HN", space required) and Canadian ones ("K1A 0B1", space required: "G2P1A1" is obstetric)
UK_POSTCODE_RE = r"\b(?:[A-PR-UWYZ][A-HK-Y]?\d[A-Z\d]?[ \t]\d[ABD-HJLNP-UW-Z]{2})\b"
CA_POSTCODE_RE = r"\b[ABCEGHJ-NPRSTVXY]\d[ABCEGHJ-NPRSTV-Z][ \t]\d[ABCEGHJ-NPRSTV-Z]\d\b"
# rural routes and highway contracts: "rural route 2, box 44", "RR 2 Box 44" (RR alone is a respiratory rate)
RURAL_ROUTE_RE = (r"(?i:\b(?:rural[ \t]+(?:route|rte|rt)\.?|star[ \t]+route|hc|highway[ \t]+contract)[ \t]*#?[ \t]*"
                  r"\d{1,4}(?:,?[ \t]*box[ \t]*#?[ \t]*\d{1,5})?\b)|\b(?:RR|R\.R\.|rr)[ \t]*#?[ \t]*\d{1,4},?[ \t]*"
                  r"(?i:box)[ \t]*#?[ \t]*\d{1,5}\b")
# a unit written before the street: "Flat 3, 17 Bruntsfield Place"
_UNIT_FIRST = r"(?i:(?:flat|apt|apartment|unit|suite)\.?[ \t]*#?[ \t]*\d+[a-z]?,?[ \t]+)"
# a city written before a state and a ZIP code, no comma needed: "Chinle AZ 86503", "L.A. CA 90064"
CITY_BEFORE_ZIP_RE = (rf"\b((?:[A-Z][a-zA-Z'-]+[ \t]){{0,2}}(?:[A-Z][a-zA-Z'-]+|[A-Z]\.(?:[A-Z]\.)+)),?[ \t]+"
                      rf"{STATES}[ \t]+\d{{5}}(?:-\d{{4}})?\b")
# a pager or an internal extension of four or five digits, after its label
EXTENSION_RE = (r"(?i:\b(?:pgr|pager|beeper|bleep|page|paged|vocera|spectralink|ext|extension|x)\.?[ \t]*"
                r"(?:at|to|#|:|no\.?)?[ \t]*#?[ \t]*)(\d{4,5})(?![\d/.:-])")
# holidays that pin one day, written without a year ("visiting until Christmas")
DAY_HOLIDAYS = (r"(?:(?i:christmas(?:[ \t]+(?:eve|day))?|xmas|thanksgiving(?:[ \t]+day)?|new[ \t]+year'?s[ \t]+"
                r"(?:eve|day)|easter(?:[ \t]+sunday)?|independence[ \t]+day|fourth[ \t]+of[ \t]+july|halloween|"
                r"valentine'?s[ \t]+day|juneteenth|boxing[ \t]+day|good[ \t]+friday|st\.?[ \t]+patrick'?s[ \t]+day|"
                r"mlk[ \t]+day|veterans'?[ \t]+day|memorial[ \t]+day|mother'?s[ \t]+day|father'?s[ \t]+day)|"
                r"Labou?r[ \t]+Day|Presidents'?[ \t]+Day|Columbus[ \t]+Day)")
# a bare month/day ("12/3"): month first, not a fraction or score (both numbers at most 6: "2/6", "5/5", "1/2"),
# not out of ten ("7/10" pain), not followed by a unit or a score word
BARE_MONTH_DAY_RE = (r"(?<![\w/.\-+:])(?!(?:1/[1-6]|2/[2-6]|3/[3-6]|4/[4-6]|5/[56]|6/6|(?:[1-9]|10)/10)(?!\d))"
                     r"(1[0-2]|0?[1-9])/(3[01]|[12]\d|0?[1-9])(?![\w/%+]|\.\d|[ \t]*(?i:days?|d\b|"
                     r"weeks?|wks?|months?|strength|murmur|sem\b|pain|scale|score|power|reflex|tab|pills?|doses?|"
                     r"times|of\b|x\b|mg|mmhg))")

_ID_VALUE = (r"((?:[A-Za-z]{1,4}[ -]?)?[A-Za-z0-9]*\d[A-Za-z0-9]*(?:-[A-Za-z0-9]+)*"
             r"(?:[ ](?=[A-Z0-9]*\d)[A-Z0-9]+(?:-[A-Z0-9]+)*){0,2})")

PATTERNS: list[tuple[str, re.Pattern[str], int]] = [
    ("EMAIL", re.compile(rf"(?<![A-Za-z0-9._%+'-]){EMAIL_RE}\b"), 0),
    ("EMAIL", re.compile(OBFUSCATED_EMAIL_RE), 0),
    ("URL", re.compile(rf"\b{URL_RE}"), 0),
    ("URL", re.compile(rf"(?<![\w./@]){SOCIAL_URL_RE}"), 0),
    ("IP", re.compile(IPV6_RE), 0),
    ("IP", re.compile(rf"(?<![\d.]){IPV4_RE}(?![\d.]*\d)"), 0),
    ("ID", re.compile(rf"(?<![\d-]){SSN_RE}(?![\d-])"), 0),
    ("ID", re.compile(rf"{_ID_LABEL}[ \t]*(?:#|no\.?|number)?[ \t]*[:#=]?[ \t]*{_ID_VALUE}(?![\w-]|[/.:]\d)"), 1),
    ("ID", re.compile(r"\b[1-9][A-Za-z][A-Za-z0-9]\d-?[A-Za-z][A-Za-z0-9]\d-?[A-Za-z]{2}\d{2}\b"), 0),  # Medicare MBI
    ("ID", re.compile(r"\b(?=[A-HJ-NPR-Z0-9]*\d)(?=[A-HJ-NPR-Z0-9]*[A-HJ-NPR-Z])[A-HJ-NPR-Z0-9]{17}\b"), 0),  # VIN
    ("PHONE", re.compile(rf"(?<![\w/.-]){PHONE_RE}(?![\w-])"), 0),
    ("PHONE", re.compile(r"(?<![\w+])\+\d{1,3}[ \t.-]?(?:\(0\)[ \t]?)?\(?\d{1,4}\)?(?:[ \t.-]?\d{2,4}){2,4}(?![\w-])"),
     0),
    ("PHONE", re.compile(r"(?i:\b(?:phone|tel|telephone|cell|mobile|pager|beeper|fax|call(?:ed)?|reach(?:ed)?[ \t]+at|"
                         r"contact(?:[ \t]+number)?|number|home|work|ph)\b)[^\d\n]{0,15}(?<![\d-])(\d{3}[-. ]\d{4}|"
                         r"\d{10,11})(?![\d-])"), 1),
    ("PHONE", re.compile(r"(?<![\w\-./:])\d{3}-\d{4}(?![\w\-/]|\.\d|[ \t]*(?i:mg|mcg|ml|units?|cells|iu|k)\b)"), 0),
    ("PHONE", re.compile(r"(?i:\b(?:ext|extension)\.?[ \t]*#?[ \t]*\d{2,6}\b|\bx[ \t]?\d{4,5}\b)"), 0),
    ("PHONE", re.compile(SPELLED_DIGITS_RE), 0),
    ("PHONE", re.compile(EXTENSION_RE), 1),
    ("DATE", re.compile(r"\b\d{4}-\d{1,2}-\d{1,2}(?:[T ]\d{1,2}:\d{2}(?::\d{2})?)?\b"), 0),
    ("DATE", re.compile(r"(?<![\d.])\d{4}([/.])\d{1,2}\1\d{1,2}(?![\d.]*\d)"), 0),
    ("DATE", re.compile(r"(?<![\d/.-])\d{1,2}([/.-])\d{1,2}\1(?:\d{4}|\d{2})(?![\d/-]|\.\d)"), 0),
    ("DATE", re.compile(rf"\b\d{{1,2}}[-]?{MONTHS_I}[-]?(?:\d{{4}}|\d{{2}})\b"), 0),
    ("DATE", re.compile(rf"\b{MONTHS_I}\b\.?,?[ \t]+(?:(?i:the)[ \t]+)?{_DAY}"
                        rf"(?:,?[ \t]+(?:(?i:of)[ \t]+)?{_YEAR})?"), 0),
    ("DATE", re.compile(rf"\b(?:(?i:the)[ \t]+)?{_DAY}[ \t]+(?:(?i:of)[ \t]+)?{MONTHS_I}\b\.?(?:,?[ \t]+{_YEAR})?"), 0),
    ("DATE", re.compile(rf"\b{MONTHS_I}\b\.?,?[ \t]+(?:(?i:of)[ \t]+)?{_YEAR}\b"), 0),
    ("DATE", re.compile(rf"\b{MONTHS_I}\b\.?[ \t]+\d{{1,2}}[ \t]*(?:-|\u2013|to)[ \t]*\d{{1,2}}"
                        rf"(?:,?[ \t]+{_YEAR})?"), 0),  # a range: "Aug. 9-12, 2021"
    ("DATE", re.compile(r"(?<![\d/.-])(?:0?[1-9]|1[0-2])[/-](?:19|20)\d{2}(?![\d/-])"), 0),
    ("DATE", re.compile(rf"\b{HOLIDAYS}(?:[ \t]+(?:(?i:of)[ \t]+)?{_YEAR})\b"), 0),
    ("DATE", re.compile(rf"\b{DAY_HOLIDAYS}\b(?![ \t]+(?i:tree|card|cards|gift|gifts|party|lights?|dinner|"
                        r"break|decorations?|cactus|music|song|carols?|season|holidays?|vacation|shopping|eggs?|"
                        r"bunny)\b)"), 0),
    ("DATE", re.compile(FOREIGN_DATE_RE), 0),
    ("DATE", re.compile(BARE_MONTH_DAY_RE), 0),
    ("DATE", re.compile(r"(?i:\b(?:on|since|from|until|till|through|thru|dated|date:?|seen|admitted|discharged|before|"
                        r"after|removed|placed|started|stopped|scheduled|performed|last|next|dos:?|dob:?|check|"
                        r"visit|appt|appointment|due|return|f/u|follow-up|mon|tue|tues|wed|thu|thur|thurs|fri|sat|"
                        r"sun|monday|tuesday|wednesday|thursday|friday|saturday|sunday),?[ \t]+)"
                        r"(\d{1,2}/\d{1,2})(?![\d/])"), 1),
    ("DATE", re.compile(rf"(?i:\b(?:on|since|from|until|till|by|before|after|monday|tuesday|wednesday|thursday|"
                        rf"friday|saturday|sunday|mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun),?[ \t]+)"
                        rf"((?i:the)[ \t]+(?:\d{{1,2}}(?i:st|nd|rd|th)|(?i:{DAY_ORDINAL_WORD})))\b"
                        rf"(?=[ \t]*(?:[,.;:)?!]|$|\n|(?i:at|and|when|in|she|he|they|we)\b))"), 1),
    ("DATE", re.compile(r"(?i:\b(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun|monday|tuesday|wednesday|thursday|"
                        r"friday|saturday|sunday),?[ \t]+)\d{1,2}/\d{1,2}(?![\d/])"), 0),
    ("DATE", re.compile(rf"(?i:\b(?:early|mid|late|end[ \t]+of|beginning[ \t]+of)[ \t-]*)"
                        rf"(?:{_MONTH_FULL}|{MONTHS})\b\.?(?:,?[ \t]+{_YEAR}\b)?"), 0),  # "mid-January 2025"
    ("DATE", re.compile(rf"(?i:\b(?:in|since|during|until|till|through|thru|by|last|next|this|before|after|from)"
                        rf"[ \t]+)({_MONTH_FULL}|(?i:january|february|april|july|august|september|october|november|"
                        r"december))\b(?!['\u2019])"), 1),  # a month alone: "turned 90 in August"
    ("ADDRESS", re.compile(rf"(?:\b{_UNIT_FIRST})?\b{STREET_RE}(?:,?[ \t]+{CITY_STATE_ZIP_RE})?"), 0),
    ("ADDRESS", re.compile(RURAL_ROUTE_RE), 0),
    ("ADDRESS", re.compile(UK_POSTCODE_RE), 0),
    ("ADDRESS", re.compile(CA_POSTCODE_RE), 0),
    ("ADDRESS", re.compile(CITY_BEFORE_ZIP_RE), 1),
    ("ADDRESS", re.compile(rf"\b{STREET_RE},[ \t]*(?![A-Z]+\b[ \t]*(?:[.,;]|$))([A-Z][a-zA-Z]+(?:[ \t][A-Z][a-zA-Z]+)?)"
                           r"\b(?![ \t]*:)", re.M), 1),
    ("ADDRESS", re.compile(r"(?i:\b(?:on|near|at|off|along|corner[ \t]+of)[ \t]+)((?:[A-Z][a-z]+[ \t]){1,2}"
                           r"(?:St|Ave|Rd|Blvd|Sq|Square|Street|Avenue|Road|Boulevard|Pl|Terr|Pkwy)\b\.?)"
                           r"(?![ \t]*(?:Mary|John|Joseph|Luke|Francis|Vincent|Elizabeth|Jude)\b)"), 1),
    ("ADDRESS", re.compile(r"(?i:\bp\.?[ \t]?o\.?[ \t]*box[ \t]*#?[ \t]*\d+|\bpost[ \t]+office[ \t]+box[ \t]+\d+|"
                           r"\bpob[ \t]+\d+)\b"), 0),
    ("ADDRESS", re.compile(rf"\b{CITY_STATE_ZIP_RE}\b"), 0),
    ("ADDRESS", re.compile(rf"\b((?:[A-Z][a-z]+[ \t]){{0,2}}[A-Z][a-z]+),[ \t]*(?:{_CITY_STATES}|{STATE_NAMES})\b"), 1),
    ("ADDRESS", re.compile(r"(?i:\b(?:zip|zip[ \t]*code|postal[ \t]*code|postcode)[ \t]*[:#]?[ \t]*)"
                           r"(\d{5}(?:-\d{4})?)\b"), 1),
    ("ADDRESS", re.compile(r"(?:\bCEP|\bC\.[ \t]?P\.|\bPLZ|\bCP)[ \t]*:?[ \t]*(\d{4,5}(?:-\d{3,4})?)\b"), 1),
    ("ADDRESS", re.compile(rf"\b(?:{STATES}|{STATE_NAMES})[ \t]+(\d{{5}}(?:-\d{{4}})?)\b"), 1),
    ("ADDRESS", re.compile(r"\b[A-Z][a-z]+(?:[ \t][A-Z][a-z]+)?[ \t]+County\b"), 0),
    ("ADDRESS", re.compile(r"(?i:\b(?:apt|apartment|suite|ste|flat)\.?[ \t]*#?[ \t]*\d+[a-z]?\b)"), 0),
    ("AGE", re.compile(rf"(?<![\d.]){_AGE_N}(?={_YEARS_OLD})"), 0),
    ("AGE", re.compile(rf"(?i:\b(?:age[ds]?|aged|age[ \t]+of|turned|turns|turning)[ \t]*:?[ \t]*)({_AGE_N})\b"), 1),
    ("AGE", re.compile(rf"(?<![\d.]){_AGE_N}(?=[ \t]?[MF]\b)"), 0),
    ("AGE", re.compile(rf"\b{_AGE_WORDS}(?={_YEARS_OLD})"), 0),
    ("AGE", re.compile(rf"(?i:\b(?:age[ds]?|aged|age[ \t]+of|turned|turns|turning)[ \t]*:?[ \t]*)({_AGE_WORDS})\b"), 1),
    ("AGE", re.compile(r"(?i:\bin[ \t]+(?:his|her|their)[ \t]+((?:(?:early|mid|late)[ \t-]*)?"
                       r"(?:nineties|'?90s|hundreds))\b)"), 1),
    ("AGE", re.compile(rf"(?i:\b(?:pt|patient|she|he|who|resident)[ \t]+(?:is|was|now|turned|turns|is[ \t]+now)[ \t]+)"
                       rf"({_AGE_N})\b(?![ \t]*(?:%|percent|mg|kg|lbs?|bpm|mmhg|/|\.\d|cm|mm|degrees|days|weeks|"
                       r"months|minutes|hours|units|ml|in\b|inches|feet))"), 1),
    ("AGE", re.compile(r"(?i:\b(?:super)?(?:nonagenarian|centenarian)s?\b)"), 0),
    ("AGE", re.compile(rf"(?i:\b(?:is|was|now|be|turning)[ \t]+)({_AGE_WORDS})\b"
                       r"(?![ \t-]*(?:percent|%|mg|minutes))"), 1),
    ("AGE", re.compile(rf"(?<=\d)[ \t]*\(({_AGE_N})\)"), 1),
    ("AGE", re.compile(rf"(?i:\b({_AGE_N}(?:st|nd|rd|th)|ninetieth|ninety-(?:first|second|third|fourth|fifth|sixth|"
                       r"seventh|eighth|ninth)|hundredth)[ \t]+birthday)"), 1),
    ("ID", re.compile(r"\b[A-Z]{1,3}\d{6,10}\b"), 0),
    ("ID", re.compile(PREFIXED_ID_RE), 0),
    ("DATE", re.compile(CJK_DATE_RE), 0),
    ("PHONE", re.compile(BR_PHONE_RE), 0),
    ("PHONE", re.compile(UK_PHONE_RE), 0),
    ("ADDRESS", re.compile(COUNTY_RE), 0),
    ("ADDRESS", re.compile(TOWN_BEFORE_COUNTY_RE), 1),
    ("ADDRESS", re.compile(FOREIGN_STREET_RE), 0),
    ("ADDRESS", re.compile(COMPOUND_STREET_RE), 0),
    ("ADDRESS", re.compile(HIGHWAY_RE), 0),
    ("ADDRESS", re.compile(ASIAN_ADDRESS_RE), 0),
    ("AGE", re.compile(AGE_WORDS_ALONE_RE), 0),
    ("AGE", re.compile(rf"(?i:\b(?:dad|mom|mum|father|mother|grand(?:ma|pa|mother|father)|husband|wife|aunt|uncle|"
                       rf"sister|brother|she|he|pt|patient)[ \t]+(?:is|was|turned|turns|is[ \t]+now)[ \t]+)({_AGE_N})"
                       r"\b(?![ \t]*(?:%|percent|mg|kg|lbs?|bpm|mmhg|/|\.\d|cm|mm|degrees|days|weeks|months|minutes|"
                       r"hours|units|ml|in\b|inches|feet|min|pounds|points))"), 1),
    ("ID", re.compile(r"(?<![\d.,$])\d{7,10}(?![\d.,]\d|[ \t]*(?i:mg|mcg|g|ml|units?)\b)"), 0),
]

_RESIDENCE = re.compile(
    r"(?i:\b(?:lives|living|live|resides|residing|resident|moved|relocated|moving|native|born|raised|grew[ \t]+up|"
    r"home|house|apartment|farm|visiting|vacationing|travell?(?:ed|ing)|flew[ \t]+in|flown[ \t]+in|"
    r"returned|stays|staying|works|worked|based)"
    r"(?:[ \t]+(?:alone|here|there|now|currently|back|up|down|with[ \t]+(?:his|her|their)?[ \t]*\w+))?[ \t]+"
    r"(?:in|at|to|from|of|near|outside(?:[ \t]+of)?)[ \t]+(?:the[ \t]+)?(?:(?:town|city|village|county|area|suburbs?)"
    r"[ \t]+of[ \t]+)?|\b(?:town|city|village)[ \t]+of[ \t]+|\b(?:is|are|was|originally|comes?|came)[ \t]+from[ \t]+)")
_ZIP_AFTER = re.compile(r",?[ \t]+\d{5}(?:-\d{4})?\b")
_WORD = re.compile(r"[^\W\d_]+(?:['\u2019.-][^\W\d_]+)*")


def valid_numeric_date(text: str) -> bool:
    """A numeric date is plausible in month-first or day-first order (rejects 45/12/20)."""
    m = re.fullmatch(r"(\d{1,4})[/.-](\d{1,2})(?:[/.-](\d{2}|\d{4}))?", text)
    if m is None:
        return True
    a, b = int(m.group(1)), int(m.group(2))
    if len(m.group(1)) == 4:
        return m.group(3) is not None and 1 <= b <= 12 and 1 <= int(m.group(3)) <= 31
    return (1 <= a <= 12 and 1 <= b <= 31) or (1 <= b <= 12 and 1 <= a <= 31)


_SCORE_BEFORE = re.compile(r"(?i:\b(?:apgars?|pain|strength|power|score|grade|ratio|murmur|wk|week|session|cycle|"
                           r"day|dose|sats?|rated|motor|reflexes)[ \t:]*$)")


def score_before(text: str, start: int) -> bool:
    """A score word right before a bare "8/9": Apgar scores, pain ratings, week 6 of 12 -- not a date."""
    return _SCORE_BEFORE.search(text, max(0, start - 12), start) is not None


def reference_url(url: str) -> bool:
    """A link to a generic reference site (cdc.gov, uptodate.com ...): not about the patient."""
    host = re.sub(r"(?i)^(?:https?://)?(?:www\.)?", "", url).split("/", 1)[0].lower()
    return any(host == d or host.endswith("." + d) for d in REFERENCE_DOMAINS)


def age_over_89(text: str) -> bool:
    """A matched age (digits or words) is 90 or more (phrases such as "nineties" always are)."""
    digits = re.search(r"\d+", text)
    if digits:
        return int(digits.group()) >= 90
    value = number_value(text)
    return value is None or value >= 90


def ambiguous_lowercase_month(piece: str) -> bool:
    """"may 2" / "march 3" in lower case without a year or ordinal: a verb, not a date."""
    m = re.match(r"(may|march|mar|dec|aug)\b", piece)  # may, march, decrease, augment ("jan 15" is a date)
    if m is None:
        return False
    return re.search(r"\d{4}|'\d{2}|\d(?:st|nd|rd|th)|(?i:first|second|third|th\b)", piece) is None


def place_spans(text: str) -> list[tuple[int, int]]:
    """City and town names: known places (``places.yaml``) written capitalized, and the words after a
    residence context ("lives in", "moved from", "town of") in any case."""
    words = list(_WORD.finditer(text))
    known = places()
    common = common_words()
    out: list[tuple[int, int]] = []
    after = {m.end() for m in _RESIDENCE.finditer(text)}
    i = 0
    last_end = -1
    while i < len(words):
        chained = last_end >= 0 and _AND_GAP.fullmatch(text, last_end, words[i].start()) is not None
        hit = None
        for n in (4, 3, 2, 1):
            if i + n > len(words) or not _joined(text, words, i, n):
                continue
            phrase = " ".join(fold(w.group()) for w in words[i:i + n])
            if phrase in known and _place_ok(words[i:i + n], words[i].start() in after or chained, common):
                hit = n
                break
            if phrase in gazetteer() and _gazetteer_ok(text, words, i, n, words[i].start() in after or chained):
                hit = n
                break
        if hit is None and words[i].start() in after:
            hit = _context_place(words, i, text, common)
        if hit:
            end = words[i + hit - 1].end()
            zip_code = _ZIP_AFTER.match(text, end)
            out.append((words[i].start(), zip_code.end() if zip_code else end))
            last_end = end
            i += hit
        else:
            i += 1
    return out


_AND_GAP = re.compile(r"(?:[ \t]*,[ \t]*|[ \t]+(?:and|or|&)[ \t]+|[ \t]*/[ \t]*)")
_PLACE_BEFORE = re.compile(r"(?i:\b(?:in|from|to|near|visiting|around|outside|of|via|toward|towards)[ \t]+$)")
COUNTRIES = (r"(?:USA|U\.S\.A?\.?|US|UK|U\.K\.|England|Scotland|Wales|Ireland|Northern Ireland|Canada|Mexico|"
             r"Guatemala|Honduras|El Salvador|Nicaragua|Cuba|Haiti|Dominican Republic|Puerto Rico|Jamaica|Colombia|"
             r"Venezuela|Ecuador|Peru|Bolivia|Chile|Argentina|Brazil|Uruguay|Paraguay|France|Germany|Netherlands|"
             r"Holland|Belgium|Spain|Portugal|Italy|Greece|Turkey|T[uü]rkiye|Poland|Ukraine|Russia|Romania|Hungary|"
             r"Sweden|Norway|Denmark|Finland|Iceland|Switzerland|Austria|Czechia|Czech Republic|Nigeria|Ghana|"
             r"Kenya|Ethiopia|Eritrea|Somalia|Sudan|Egypt|Morocco|Algeria|Tunisia|Libya|Senegal|Mali|Cameroon|"
             r"Congo|DRC|Uganda|Rwanda|Tanzania|Zimbabwe|Zambia|South Africa|Liberia|Sierra Leone|Israel|"
             r"Lebanon|Syria|Jordan|Iraq|Iran|Saudi Arabia|Yemen|Afghanistan|Pakistan|India|Bangladesh|Nepal|"
             r"Sri Lanka|Myanmar|Burma|Thailand|Vietnam|Viet Nam|Cambodia|Laos|Malaysia|Indonesia|Philippines|"
             r"China|Taiwan|Hong Kong|Japan|Korea|South Korea|Australia|New Zealand)")
_PLACE_AFTER = re.compile(rf"(?:,[ \t]*(?:{_CITY_STATES}|{STATE_NAMES})\b(?!-)|[ \t]+(?!CT\b){_CITY_STATES}\b(?!-)|"
                          rf",[ \t]*{COUNTRIES}\b|[ \t]*\({COUNTRIES}\))")


def _gazetteer_ok(text: str, words: list[re.Match[str]], i: int, n: int, in_context: bool) -> bool:
    """A gazetteer name (GeoNames) is a place only capitalized and in a place context: after "in", "from",
    "lives in" ..., after another place and "and", or before a state or a country ("Kano, Nigeria").
    Common English words ("Mobile", "Normal"), medical words, eponyms and clinical terms
    ("Denver shunt", "Bethesda III") are not, unless a state or a country follows."""
    ws = words[i:i + n]
    if not all(w.group()[0].isupper() for w in ws) or not _joined(text, words, i, n):
        return False
    end = ws[-1].end()
    phrase = text[ws[0].start():end]
    if re.fullmatch(COUNTRIES, phrase) or re.fullmatch(STATE_NAMES, phrase):
        return False  # "travelling to Ghana": a country or a state is not a place smaller than a state
    f = fold(ws[0].group())
    if n == 1 and (zipf(f) >= 4.0 or is_medical(f) or f in _eponyms() or len(f) < 4):
        return False
    if _HEAD_AFTER.match(text_after(ws[-1])) or _SCORE_OR_HEAD.match(text, end):
        return False
    if in_context or _PLACE_AFTER.match(text, end):
        return True
    return _PLACE_BEFORE.search(text, max(0, ws[0].start() - 12), ws[0].start()) is not None


_SCORE_OR_HEAD = re.compile(r"[ \t]+(?:[IV]+\b|\d{1,3}(?![\d-])|(?i:disease|virus|fever|syndrome|shunt|criteria|rules?|"
                            r"classification|system|scale|score|procedure|technique|test|sign|agar|strain))")


def _joined(text: str, words: list[re.Match[str]], i: int, n: int) -> bool:
    return all(text[words[j].end():words[j + 1].start()] in (" ", "-") for j in range(i, i + n - 1))


def _place_ok(ws: list[re.Match[str]], in_context: bool, common: frozenset[str]) -> bool:
    """A place of ``places.yaml``: capitalized, not a clinical term; one that is also a common word
    ("Mobile", "Reading") only in a place context or before a state or a country."""
    if in_context:
        return True
    if not all(w.group()[0].isupper() for w in ws) or fold(ws[0].group()) in _eponyms():
        return False
    if _HEAD_AFTER.match(text_after(ws[-1])) or _SCORE_OR_HEAD.match(ws[-1].string, ws[-1].end()):
        return False  # "Boston bowel prep scale", "Ottawa ankle rules": a clinical term, not a place
    if len(ws) > 1:
        return True
    f = fold(ws[0].group())
    if f in lexicon_names() or zipf(f) >= 5.0:
        return False
    if zipf(f) >= 4.0:
        text, start, end = ws[0].string, ws[0].start(), ws[0].end()
        return bool(_PLACE_AFTER.match(text, end) or _PLACE_BEFORE.search(text, max(0, start - 12), start))
    return True


def _context_place(words: list[re.Match[str]], i: int, text: str, common: frozenset[str]) -> int:
    """How many words after a residence context form a place name (0 if none; a country is none)."""
    n = _context_words(words, i, text, common)
    if n and re.fullmatch(COUNTRIES, text[words[i].start():words[i + n - 1].end()]):
        return 0
    return n


def _context_words(words: list[re.Match[str]], i: int, text: str, common: frozenset[str]) -> int:
    n = 0
    while i + n < len(words) and n < 3:
        w = words[i + n].group()
        f = fold(w)
        if n and not _joined(text, words, i + n - 1, 2):
            break
        capital = w[0].isupper()
        if (capital and (f not in common or (n == 0 and f not in _NOT_PLACES))) or (
                not capital and f not in common and len(f) > 2):
            n += 1
        else:
            break
    return n


@cache
def _eponyms() -> frozenset[str]:
    from precimed.privacy.note_names import name_words

    return name_words().eponyms


_HEAD_AFTER = re.compile(r"(?:[ \t]+[A-Za-z]+){0,2}[ \t]+(?i:scale|score|criteria|classification|rules?|index|"
                         r"protocol|questionnaire|grade|stage|staging)\b")


def text_after(word: re.Match[str]) -> str:
    """Up to 40 characters of the note after a matched word."""
    return word.string[word.end():word.end() + 40]


_NOT_PLACES = frozenset({"a", "an", "the", "his", "her", "their", "home", "here", "there", "our", "my", "assisted",
                         "nursing", "group", "hospital", "rehab", "shelter", "jail", "prison"})
