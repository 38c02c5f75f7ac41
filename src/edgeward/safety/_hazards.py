"""The hazard lexicon: words and phrases of each MLCommons hazard category (Llama Guard 3).

A term is written in a small notation: words separated by spaces; ``a/b/c`` are alternatives;
a trailing ``*`` makes a word a prefix (``suicid*``); a trailing ``?`` makes a word optional.
The first word's alternatives are the term's triggers (see :mod:`edgeward.safety._scan`).

A term found in a text is evidence, not a verdict: the classifier and the request's intent
decide whether the text is harmful; the lexicon says which category it falls in.
"""

from __future__ import annotations

import re

from edgeward.safety._scan import Lexicon, Term

__all__ = ["HAZARD_LEXICON", "HAZARD_NAMES", "HAZARD_WEIGHTS"]

HAZARD_NAMES = {
    "S1": "Violent Crimes", "S2": "Non-Violent Crimes", "S3": "Sex-Related Crimes",
    "S4": "Child Sexual Exploitation", "S5": "Defamation", "S6": "Specialized Advice",
    "S7": "Privacy", "S8": "Intellectual Property", "S9": "Indiscriminate Weapons",
    "S10": "Hate", "S11": "Suicide & Self-Harm", "S12": "Sexual Content", "S13": "Elections",
    "S14": "Code Interpreter Abuse",
}

# Evidence weight (log-odds scale) of each category's terms.
HAZARD_WEIGHTS = {"S1": 2.5, "S2": 2.0, "S3": 3.0, "S4": 3.5, "S5": 2.0, "S6": 1.5, "S7": 2.0,
                  "S8": 2.0, "S9": 3.0, "S10": 2.5, "S11": 3.0, "S12": 2.0, "S13": 2.0,
                  "S14": 2.5}

_TERMS: dict[str, str] = {
    "S1": """kill/killing/murder someone/people/him/her/them/others/civilians/pedestrians |
        murder* | assassinat* | stab/stabbing someone/people/him/her | shoot/shooting
        up/someone/people/civilians | massacre* | terrorist* | terrorism | kidnap* | tortur* |
        assault* | mass shooting | school shooting | beat up | strangl* | hitman |
        poison/poisoning someone/people/my/him/her/a | violence against | harm/hurt/injure
        people/others/someone/pedestrians/civilians/children | inflict* | weapon* |
        firearm* | gun/guns | ammunition | arson | burn down | attack people/someone/civilians |
        maximum damage | hostage* | military-grade | military grade | unalive |
        get rid of my/her/his/their wife/husband/boss/neighbor/neighbour/mother/father/ex/
        brother/sister/coworker/roommate/partner/stepfather/stepmother | permanently
        silence/eliminate | sleep/asleep forever | never wake up | untraceable poison |
        disappear without a trace | cause a fatal/deadly accident""",
    "S2": """steal* | stole | theft | shoplift* | rob/robbing/robbery | fraud* | scam* |
        phishing | launder* | counterfeit* | embezzl* | tax evasion | evade taxes |
        insider trading | hack/hacking into | malware | ransomware | keylogger* | trojan* |
        botnet* | ddos | spyware | exploit/exploiting vulnerabilit* | crack/cracking
        password/passwords | identity theft | forge/forged/forging documents/signatures/
        passports/checks | fake id/ids/passport/passports | smuggl* | trafficking |
        sell/selling drugs | illegal drugs | cocaine | heroin | meth | methamphetamine |
        fentanyl | bribe* | blackmail* | extort* | pirate/pirated/piracy | cheat/cheating
        on/in exam/exams/test | poach* | vandal* | break into | pick a lock | hotwir* |
        without getting caught | without being caught/detected/traced | evade/evading
        police/detection/authorities | illegal | illegally | untraceable | black market |
        dark web | darkweb | ponzi | pyramid scheme | stolen credit cards | crystal meth |
        cook/cooking meth | background check/checks | sneak/smuggle a? knife/gun/weapon/drugs |
        past airport/security | criminal activity/activities | commit crimes/fraud/crime |
        sql injection | xss payload | exploit code | zero-day | payload to inject""",
    "S3": """rape | raping | sexual/sexually assault* | sex trafficking | human trafficking |
        traffick* women/girls/people/victims | non-consensual | nonconsensual |
        revenge porn | sextort* | date rape | roofie* | forced prostitution | molest* |
        grope | groping""",
    "S5": """defam* | libel* | slander* | false rumors/rumours/claims/story/stories/accusations/
        allegations about | ruin his/her/their/someone's reputation | spread/spreading
        lies/rumors/rumours | smear campaign | fake news | false story/article/report""",
    "S6": """diagnose me | diagnose my | my symptoms/diagnosis/medication/prescription/lawsuit/
        custody/lease/will/divorce/taxes/portfolio/retirement/mortgage/loan/loans/debt/debts/
        insurance/landlord/visa/immigration/investments/savings | my credit score |
        my employment contract | my financial situation | my specific situation | my
        specific case | medical advice | legal advice | financial advice | should i
        take/invest/sue/buy/sell | which stocks | do i have | am i eligible/entitled/liable |
        cure/treat my | legal strategy | legal loophole* | invest in | invest my | my
        personal risk | buy or sell a/the? particular/specific? stock/stocks/shares/crypto |
        stock options should | which stock/stocks/shares/crypto should""",
    "S7": """track/monitor/locate/stalk/surveil someone/someone's/people/my/an/their/his/her |
        spy on | stalk* | dox* | home address | personal information/data/details of/about |
        without their/his/her/someone's knowledge/consent/permission | private
        messages/conversations/records/photos | access someone's | facial recognition |
        social security numbers | confidential records | confidential employment/medical
        records""",
    "S8": """lyrics of/to/from | full/entire/complete text/passage/chapter of/from |
        copyrighted | pirated | torrent* | bypass/break/circumvent/remove
        drm/licensing/paywall/digital | cracked
        software/version | generate the lyrics/passage | long passage""",
    "S9": """bomb/bombs | explosive* | ied | ieds | detonat* | nerve agent/agents/gas | sarin |
        vx | mustard gas | chlorine gas | phosgene | anthrax | ricin | botulinum | smallpox |
        bioweapon* | biological weapon* | chemical weapon* | nuclear weapon*/bomb/device |
        dirty bomb | radiological | enrich/enriched/enriching uranium | plutonium | pipe
        bomb | molotov | napalm | tnt | semtex | weapons of mass destruction | gain of
        function | dimethylmercury | tabun | novichok | pathogen* | mass casualt* | poison
        gas | toxin/toxins | nitroglycerin | ammonium nitrate | weaponiz*""",
    "S10": """racis* | hate speech | slur/slurs | inferior race/people | white supremac* |
        nazi* | promote/promoting/incite/inciting/spread hatred/violence/hate against |
        genocide | ethnic cleansing | antisemit* | anti-semit* | islamophob* | homophob* |
        transphob* | xenophob* | dehumaniz* | discriminat* against | hate group/groups/crime/
        crimes | bigot* | misogyn* | inherently less/inferior/inferiority | less intelligent
        than | genetically inferior""",
    "S11": """suicid* | kill myself/yourself/themselves | end my/your/their own? life |
        self-harm* | self harm | cut/cutting myself/yourself | hurt myself/yourself |
        anorexi* | bulimi* | starve/starving myself/yourself | pro-ana | want to die |
        overdos* | eating disorder*""",
    "S12": """porn* | explicit sex* | erotic* | nsfw | sexually explicit | nude | nudes |
        naked | sex scene/scenes | adult content/industry/webcam/sites/site/films/videos |
        fetish* | hentai | onlyfans | sexting | sexual content/acts/act/fantasies""",
    "S13": """election/elections | ballot/ballots | voter/voters | voting | vote fraud/
        suppression | polling station/stations/place/places | electoral | political
        campaign/campaigns | candidate/candidates | rig the/an? election | political
        lobbying/advocacy/messaging/ads | campaign materials/messages/strategy""",
}

# The same hazards in Spanish, French and German (the normaliser has stripped accents, so
# "cómo" is "como" and "töten" is "toten"): requests in these languages are scored by the
# same rules instead of passing as unfamiliar text. Words that are common English words too
# ("gift", "arme") are left out.
_TERMS_ES_FR_DE: dict[str, str] = {
    "S1": """matar/asesinar a? alguien/personas/gente/mi/su | asesinato* | envenen* | tuer
        quelqu'un/des/mon/ma/les | assassiner | empoisonn* | toten/ermorden/umbringen |
        jemanden toten/umbringen/vergiften | vergift* | armas de fuego | armes a feu |
        agredir | agresse/agresser/agressé | angegriffen | angreifen |
        schusswaffe* | secuestr* | kidnapp* | entfuhr*""",
    "S2": """robar | hackear | piratear | metanfetamina | cocaina | heroina | lavar dinero |
        blanquear* | pirater | voler de l'argent | drogue/drogues | blanchir | methamphetamine |
        stehlen | hacken | geldwasche | falschgeld | rauschgift | drogen herstellen |
        chantaj* | faire chanter | erpress* | estafa* | escroquer* | arnaque* | betrug* |
        betrugen | hacer trampa | tricher | robe/roba/robar los? fondos | vole/voler les? fonds |
        stiehlt | informacion privilegiada | delit d'initie | insiderhandel | sin que me
        descubran | sans me faire prendre | ohne erwischt zu werden | borrar mis huellas |
        effacer mes traces | spuren verwischen/verwische | verwische meine spuren""",
    "S5": """noticias falsas | fausses nouvelles | fake-news | difunda/difundir mentiras |
        repand/repandre des mensonges | lugen verbreitet/verbreiten""",
    "S7": """sin su consentimiento | sans leur/son consentement | ohne ihre/seine zustimmung""",
    "S4": """pornografia infantil | pedopornograph* | pedophil* | kinderporno* |
        kindesmissbrauch* | abuso sexual infantil | abus sexuels? sur? des? enfants""",
    "S9": """fabricar/construir/hacer/armar/preparar una/un? bomba/bombas/explosivo* |
        bomba/bombas casera/caseras/molotov/sucia/nuclear/de tubo/de clavos | explosivo* |
        bombe/bomben | explosif* | sprengstoff* |
        sprengsatz* | gas nervioso | gaz neurotoxique | nervengas | arma/armes/waffe
        quimica/chimique/chimique | arma/armes/waffe biologica/biologique | biowaffe* |
        chemiewaffe*""",
    "S11": """suicidarme | quitarme la vida | me suicider | mettre fin a mes jours |
        mich umbringen | selbstmord* | suizid* | autolesion* | automutil*""",
}

# Terms that need more than the notation allows.
_RAW: tuple[Term, ...] = (
    Term("S4", ("child", "children", "minor", "minors", "underage", "kid", "kids", "teen",
                "teens", "year", "years", "csam", "pedophil*", "paedophil*", "lolicon",
                "groom*", "girl", "girls", "boy", "boys", "son", "daughter"),
         re.compile(r"\bchild (?:porn\w*|sexual\w*|abuse material|nud\w+)|\bcsam\b|"
                    r"\bp(?:a)?edophil\w*|\blolicon\b|\bgroom(?:ing)? (?:a |the )?"
                    r"(?:child|minor|kid)s?\b|\b(?:minors?|underage|children|kids?|teens?|"
                    r"year[- ]olds?)\b[^.!?\n]{0,30}\b(?:sex\w*|nude|naked|explicit|porn\w*|"
                    r"erotic)|\b(?:sex\w*|nude|naked|explicit|porn\w*|erotic\w*)\b[^.!?\n]"
                    r"{0,40}\b(?:minors?|underage|child|children|kids?|teens?|\d{1,2}[- ]years?"
                    r"[- ]olds?|(?:girl|boy)s? under)|\b(?:minors?|underage|child|children|kids?|"
                    r"teens?|(?:girl|boy)s?|\d{1,2}[- ]years?[- ]olds?|son|daughter)\b"
                    r"[^.!?\n]{0,80}(?:\b(?:secret|hide it) from (?:his|her|their) (?:parents|mom|"
                    r"mum|dad|family)|\bwithout (?:his|her|their) parents (?:knowing|finding out)|"
                    r"\bmeet (?:me |up )?alone\b|\bsend (?:me )?(?:pics|photos|pictures|selfies)"
                    r"\b)"), before=80, after=100),
    Term("S14", ("os", "subprocess", "rm", "fork", "passwd", "shadow", "container", "escape",
                 "reverse", "privilege", "import", "exhaust"),
         re.compile(r"\bos\.system\b|\bsubprocess\b|\brm -rf /|\bfork bomb\b|"
                    r"/etc/(?:passwd|shadow)\b|\bcontainer escape\b|\bescape (?:the |a |from "
                    r"the )?(?:sandbox|container)\b|\breverse shell\b|\bprivilege escalation\b|"
                    r"__import__|\bexhaust (?:the )?(?:memory|cpu|disk)\b"),
         before=20, after=30),
)


def _word(token: str) -> str:
    optional = token.endswith("?")
    token = token.rstrip("?")
    alts = []
    for alt in token.split("/"):
        prefix = alt.endswith("*")
        alts.append(re.escape(alt.rstrip("*")) + (r"[\w-]*" if prefix else ""))
    group = "(?:" + "|".join(alts) + ")"
    return f"(?:{group}\\s+)?" if optional else f"{group}\\s+"


def _regex(term: str) -> str:
    return "".join(_word(t) for t in term.split())[:-3]  # without the last "\s+"


def _triggers(term: str) -> list[str]:
    """The trigger of each alternative of the first word, as the scanner splits words."""
    out = []
    for alt in term.split(maxsplit=1)[0].rstrip("?").split("/"):
        piece = re.split(r"[-']", alt)[0]
        out.append(piece + ("*" if alt.endswith("*") and piece == alt.rstrip("*") else ""))
    return out


def _build() -> Lexicon:
    grouped: dict[tuple[str, str], list[str]] = {}
    for key, spec in [*_TERMS.items(), *_TERMS_ES_FR_DE.items()]:
        for term in (t.strip() for t in spec.split("|")):
            if term:
                for trig in _triggers(term):
                    grouped.setdefault((key, trig), []).append(_regex(term))
    terms = [Term(key, (trig,), re.compile(r"(?:" + "|".join(regexes) + r")\b"), anchored=True)
             for (key, trig), regexes in grouped.items()]
    return Lexicon([*terms, *_RAW])


HAZARD_LEXICON = _build()
