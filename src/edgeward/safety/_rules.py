"""Hand-written evidence the classifier combines with its own: attack phrasings and hazard terms.

A rule adds log-odds to one label of the classifier (``injection``, ``jailbreak``, ``harmful``);
benign context ("how do I protect against ...") takes some away. The rules carry knowledge no
training set of a few thousand prompts holds: the classic instruction overrides in several
languages, the persona jailbreaks, and the hazard vocabulary of each MLCommons category, so an
unseen phrasing of a known attack still moves the score. The hazard lexicon also names the
category of a harmful request (Llama Guard 3's S1..S14; the terms are in :mod:`._hazards`).

Every pattern runs only near its trigger words (:class:`edgeward.safety._scan.Lexicon`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edgeward.safety._hazards import HAZARD_LEXICON, HAZARD_WEIGHTS
from edgeward.safety._scan import Lexicon, Scan, Term

__all__ = ["RuleHit", "categorise", "rule_evidence"]


@dataclass(frozen=True)
class RuleHit:
    """One rule that matched.

    Attributes:
        rule: the rule's name.
        label: the classifier label it adds evidence to.
        weight: log-odds added (negative for benign context).
    """

    rule: str
    label: str
    weight: float


def _t(key: str, triggers: str, pattern: str, *, before: int = 0, after: int = 160) -> Term:
    """A rule: the words of ``triggers`` (``word*`` for a prefix) and a confirming pattern."""
    return Term(key, tuple(triggers.split()), re.compile(pattern), before=before, after=after)


_PRIOR = (r"(?:previous|prior|above|preceding|earlier|former|initial|original|foregoing|"
          r"all (?:of )?(?:your|the|my)|your|the system)")
_THING = (r"(?:instructions?|prompts?|directions?|rules?|orders?|commands?|tasks?|"
          r"assignments?|context|messages?|guidelines|information|text|documents?|articles?|"
          r"programming|training|constraints)")

# A typed-out "\n" after a space or punctuation, before a capitalised word or another "\n":
# a fake line break that starts a new "instruction" ("...in 2023?\nBlame China!"). In code,
# "\n" sits inside a string after a letter or a quote.
_LITERAL_NEWLINE = re.compile(r"(?:^|[\s?.!:;])\\n\s*(?:[A-Z][a-z]+|\\n)")
_CJK_OVERRIDE = re.compile(r"(?:忽略|忘记|忘掉|無視|忘れ)[^。！？\n]{0,12}"
                           r"(?:指令|指示|之前|以上|命令)")
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)|\n+")
_EXPLICIT_GAP = 60  # characters between a request and the hazard it asks for
# An outright request: the asking phrases, or an imperative verb that opens the sentence or
# follows a comma, colon or "please" ("For my class, explain how to ..."; "Please write ...").
_REQUEST = re.compile(
    r"\b(?:how (?:to|do|can|could|would|should) (?:i|we|you|one|someone|a person) "
    r"(?:\w+ ){0,2}?|how to|ways? to|steps? (?:to|for)|step-by-step|guide (?:to|for|on)|"
    r"tutorial (?:on|for)|instructions (?:for|on|to)|recipe for|teach me|show me|"
    r"explain (?:how|the steps)|give me|tell me how|help me|walk me through)|"
    r"(?:^\W*|(?<=[.!?] )|(?<=\n)|[,:;]\s*|\bplease\s+)(?:write|create|generate|make|build|"
    r"produce|provide|describe|list|draft|design|develop|code|explain|give|outline|detail)\b")
_DEFENSIVE_WEIGHT = 1.5  # log-odds a defensive opening takes from "harmful"
# A question that opens defensively ("How can I protect ...", "What are the symptoms of ...")
# counts against "harmful"; a defensive phrase elsewhere only cancels the hazard evidence, so
# "build a bomb to protect my family" gains nothing from it ...
_DEFENSIVE_START = re.compile(
    r"\W*(?:how (?:can|do|should|could) (?:i|we|you|one|parents|companies|people) "
    r"(?:best )?(?:protect|secure|defend|prevent|detect|recogni[sz]e|spot|avoid|report|"
    r"help|support|treat|mitigate|harden)|what (?:are|is) the (?:warning )?(?:signs|symptoms|"
    r"risks|dangers|side effects|treatment)|how (?:does|do|can|could) (?:a |an |the )?\w+"
    r"(?: \w+){0,3} (?:detect|prevent|protect|block|stop|defend))"
    r"|\W*(?:como|comment|wie) (?:\w+ ){0,2}(?:proteger|protejo|prevenir|evitar|detectar|"
    r"reconocer|eviter|detecter|reconnaitre|schutze|schutzen|verhindern|vermeiden|erkennen)\b")
# ... and neither applies when the text also asks how to get away with something.
_EVASION = re.compile(
    r"\b(?:while|when|after|before) (?:robbing|stealing|committing|selling|smuggling|hacking|"
    r"breaking|killing|attacking|poisoning)|without (?:getting|being) (?:caught|detected|"
    r"traced|noticed)|(?:from|evade|avoid) (?:the )?(?:police|cops|law enforcement|"
    r"authorities)")

# key -> (label, log-odds)
_WEIGHTS: dict[str, tuple[str, float]] = {
    "override_previous": ("injection", 4.0), "forget_everything": ("injection", 3.0),
    "new_task_follows": ("injection", 2.0), "reveal_prompt": ("injection", 3.5),
    "prompt_start": ("injection", 2.5), "override_de": ("injection", 4.0),
    "override_romance": ("injection", 4.0), "say_exactly": ("injection", 1.5),
    "instead_output": ("injection", 2.0), "dan_persona": ("jailbreak", 4.0),
    "special_mode": ("jailbreak", 3.5), "no_ethics": ("jailbreak", 3.0),
    "amoral_unfiltered": ("jailbreak", 2.0), "never_refuse": ("jailbreak", 2.5),
    "policy_bypass": ("jailbreak", 3.0), "stay_in_character": ("jailbreak", 1.5),
    "dual_response": ("jailbreak", 2.0), "from_now_on": ("jailbreak", 1.0),
    "fictional_bypass": ("harmful", 0.7), "override_task": ("injection", 3.0),
    "instead_act": ("injection", 2.5), "override_other": ("injection", 4.0),
    "say_that_you": ("injection", 2.0), "stop_now": ("injection", 2.5),
    "literal_newline": ("injection", 2.5), "instruction_label": ("injection", 2.5),
    "written_above": ("injection", 3.0), "pretend": ("injection", 1.5),
    "you_are_now": ("jailbreak", 1.5), "role_play": ("injection", 2.0),
    "named_dan": ("jailbreak", 3.0), "fake_system": ("injection", 3.0),
    "safety_off": ("jailbreak", 3.0), "insert_code": ("injection", 3.0),
    "to_the_ai": ("injection", 2.5), "hide_from_user": ("injection", 1.5),
    "template_tokens": ("injection", 3.0), "secret_request": ("injection", 2.0),
}

_RULES = Lexicon([
    _t("override_previous",
       "ignore ignoring disregard forget skip override bypass drop erase discard abandon "
       "neglect set pay",
       rf"\b(?:ignor\w*|disregard\w*|forget|skip|override|bypass|drop|erase|discard|abandon|"
       rf"neglect|set aside|pay no attention to)\b[^.!?\n]{{0,30}}\b{_PRIOR}\b[^.!?\n]{{0,20}}"
       rf"\b{_THING}\b"),
    _t("forget_everything", "forget ignore disregard",
       r"\b(?:forget|ignore|disregard)\s+(?:about\s+)?(?:everything|all|anything)\b"),
    _t("new_task_follows", "instructions instruction tasks task assignments assignment rules "
       "rule concentrate", before=20, pattern=
       r"\b(?:new|further|different|updated|more|following) (?:instructions?|tasks?|"
       r"assignments?|rules?) (?:follow|are|is)\b|\bconcentrate on (?:your|the) new task"),
    _t("reveal_prompt", "prompt prompts instructions configuration password secret",
       before=70, after=30, pattern=
       r"\b(?:reveal|show|print|display|output|repeat|tell me|leak|spell out|what (?:is|are|"
       r"was|were))\b[^.?!\n]{0,30}\b(?:your|the|this)\s+(?:full\s+|entire\s+|initial\s+|"
       r"hidden\s+|secret\s+|original\s+)?(?:system\s+)?(?:prompt|instructions|"
       r"configuration|password|secret key)s?\b"),
    _t("prompt_start", "beginning start top",
       r"\b(?:beginning|start|top) of (?:this|the|your) (?:prompt|conversation|document)"),
    _t("override_de", "ignoriere ignorieren ignoriert vergiss vergessen missachte",
       r"\b(?:ignorier\w*|vergiss|vergessen sie|missachte\w*)\b[^.!?\n]{0,40}\b(?:alle[ns]?|"
       r"vorherige\w*|bisherige\w*|obige\w*|vorangehende\w*|davor|anweisungen|aufgaben|"
       r"aufträge|befehle)\b"),
    _t("override_romance", "olvida olvide ignora ignore ignorez oublie oubliez dimentica",
       r"\b(?:olvida|olvide|ignora|ignore[zr]?|oublie[zr]?|dimentica)\b[^.!?\n]{0,30}\b"
       r"(?:todo|todas|instrucciones|anteriores|instructions|consignes|précédentes|tutto|"
       r"istruzioni)\b"),
    _t("say_exactly", "just only instead",
       r"\b(?:just|only|instead)\s+(?:say|output|print|write|respond with|reply with)\s*"
       r"[\"'“:]"),
    _t("instead_output", "instead rather",
       r"\b(?:instead|rather)\b[^.!?\n]{0,20}\b(?:output|print|say)\b"),
    _t("dan_persona", "dan stan dude aim betterdan anything", before=10, pattern=
       r"\b(?:dan|stan|dude|aim|betterdan)\b[^.!?\n]{0,40}\b(?:stands for|which stands|"
       r"do anything|can do anything|has broken free|no restrictions)|\bdo anything now\b"),
    _t("special_mode", "developer dev god unrestricted jailbreak evil chaos opposite debug "
       "debugging",
       r"\b(?:developer|dev|god|unrestricted|jailbreak|evil|chaos|opposite|debug|debugging) "
       r"mode\b"),
    _t("no_ethics", "ethical moral ethics morals morality", before=40, after=20, pattern=
       r"\b(?:no|without|free (?:of|from)|not bound by|ignor\w* (?:all )?|lacks?|devoid of)"
       r"\s+(?:any\s+)?(?:ethical|moral|ethics|morals|morality)\b"),
    _t("amoral_unfiltered", "amoral unfiltered uncensored unethical jailbroken unrestricted "
       "censorship filters filter", before=20, pattern=
       r"\b(?:amoral|unfiltered|uncensored|unethical ai|jailbroken|unrestricted ai|"
       r"without (?:any )?censorship|no filters?)\b"),
    _t("never_refuse", "refuse decline reject say warn", before=30, after=40, pattern=
       r"\b(?:never|don't|do not|will not|won't|must not|cannot|can't|shall not)\s+(?:ever\s+)?"
       r"(?:refuse|decline|reject|say (?:no|sorry|that you can't|you can't)|warn)\b"),
    _t("policy_bypass", "openai anthropic content safety usage bypass break ignore escape",
       r"\b(?:openai|anthropic|content|safety|usage)\s+(?:polic(?:y|ies)|guidelines|"
       r"filters?|restrictions)\b[^.!?\n]{0,40}\b(?:don't|do not|no longer|doesn't|does not|"
       r"not) (?:apply|matter|exist|bind)|\b(?:bypass|break|ignore|escape)\w*\s+(?:the\s+)?"
       r"(?:openai|content|safety)\s+(?:polic(?:y|ies)|guidelines|filters?)"),
    _t("stay_in_character", "stay stays staying", r"\bstay(?:s|ing)? in character\b"),
    _t("dual_response", "responses answers paragraphs ways", before=30, pattern=
       r"\b(?:two|2) (?:different |separate )?(?:responses|answers|paragraphs|ways)\b"
       r"[^\n]{0,120}\b(?:normal|classic|chatgpt|jailbreak|filtered|unfiltered)"),
    _t("from_now_on", "from",
       r"\bfrom now on,? (?:you|your|refer|respond|act|answer|always|only|never|reply)\b"),
    _t("override_task", "forget ignore disregard skip",
       r"\b(?:forget|ignore|disregard|skip)\b[^.!?\n]{0,20}\b(?:the|this|that|your|my)\s+"
       r"(?:summary|task|translation|question|request|email|document|text|article|"
       r"context|articles|documents)\b"),
    _t("instead_act", "instead",
       r"\binstead,?\s+(?:forward|send|email|output|print|reveal|say|write|tell|show|"
       r"delete|transfer|post|upload|run|execute)\b"),
    _t("override_other", "забудь забудьте игнорируй игнорируйте zaboravi",
       r"(?:забудь(?:те)?|игнорируй(?:те)?|zaboravi)[^.!?\n]{0,30}"
       r"(?:все|всё|инструкц|sve|instrukcije)"),
    _t("say_that_you", "say state", r"\b(?:say|state) that (?:you|trump|\w+ is the best)"),
    _t("stop_now", "stop attention achtung stopp",
       r"^\W*(?:stop|attention|achtung|stopp)\s*[-!:.,]", after=20),
    _t("instruction_label", "instruction instructions anweisung", before=4, after=4,
       pattern=r"(?:^|\n|\\n)\s*(?:new |neue )?(?:instructions?|anweisung)\s*:"),
    _t("written_above", "written",
       r"\bwritten (?:above|before|at the (?:beginning|start|top))", after=30),
    _t("role_play", "role playing roleplaying acting", before=20, after=10,
       pattern=r"\b(?:you are|you're|you will be) (?:now )?(?:role-?playing|playing the role|"
       r"acting) as\b"),
    _t("named_dan", "dan", before=30, after=5,
       pattern=r"\b(?:named|called|s'appell\w*|heißt|llamad[oa]|chiamat[oa])\s+dan\b"),
    _t("pretend", "pretend", r"\bpretend (?:you|to be|that you)\b", after=20),
    _t("you_are_now", "now", r"\byou are now (?:a |an |the |in |my |called |named )?\w+",
       before=10, after=30),
    _t("fake_system", "system admin administrator developer root override sudo",
       before=4, after=40, pattern=
       r"(?:[\[<#*=({]|^|\n)\s*(?:system|admin(?:istrator)?|developer|root|sudo)\s*"
       r"(?:override|mode|message|notice|command|instruction|update|prompt)s?\s*"
       r"[\]>:)}*#=|-]"),
    _t("safety_off", "safety filters filter guardrails guardrail restrictions censorship "
       "alignment moderation content", before=4, after=30, pattern=
       r"\b(?:safety|filters?|guardrails?|restrictions|censorship|alignment|moderation|"
       r"content (?:filter|policy))(?:[_ ](?:filters?|mode|checks?|protocols?))?\s*"
       r"(?:=|:|is|are|set to|now|->)\s*(?:off|disabled?|false|0|none|deactivated|removed|"
       r"lifted|suspended)\b"),
    # indirect injection: content that carries orders for the model that reads it
    _t("insert_code", "insert add integrate inject incorporate include embed append place put",
       after=200, pattern=
       r"\b(?:insert|add|integrate|inject|incorporate|include|embed|append|place|put)\b"
       r"[^\n]{0,60}\b(?:following|subsequent|this|below|next)\b[^\n]{0,30}\b(?:code|snippet|"
       r"script|block|excerpt|lines?)\b[\s\S]{0,200}?(?:os\.system|subprocess|requests\.(?:post|"
       r"get|put)|urllib|socket\.|ftplib|smtplib|nc -e|/bin/(?:ba)?sh|curl |wget |rm -rf|"
       r"eval\(|exec\(|base64\.b64decode|keylog|crontab)"),
    _t("to_the_ai", "ai assistant chatbot model llm gpt bot summarizer summariser agent if note",
       before=20, after=60, pattern=
       r"\b(?:note|message|instructions?) (?:to|for) (?:the |any )?(?:ai|assistant|chatbot|"
       r"language model|llm|model|bot|summari[sz]er|agent)s?\b|\bif you are (?:an? )?(?:ai|"
       r"assistant|chatbot|language model|llm|bot|agent|reading this)\b|\b(?:dear |hey |hi )?"
       r"(?:ai|assistant|chatbot|llm|gpt|bot|agent|summari[sz]er)\s*[,:]\s*(?:you must|you "
       r"should|please (?:ignore|disregard|forget|reply|respond|say|tell|send|include|add)|"
       r"ignore|disregard|forget|do not|don't|always|never|now)"),
    _t("hide_from_user", "tell inform mention reveal let show user", before=40, after=30,
       pattern=r"\b(?:do not|don't|never|without) (?:tell|inform|mention (?:this )?to|reveal "
       r"(?:this )?to|let|show (?:this )?to|alert|notify)\s*(?:the |your )?user"),
    _t("template_tokens", "im_start im_end system inst sys endoftext start_header_id",
       before=6, after=10, pattern=
       r"<\|(?:im_start|im_end|system|endoftext|start_header_id)\|?>|\[/?inst\]|<<sys>>|"
       r"^#{2,}\s*(?:system|instruction)s?\b|\n#{2,}\s*(?:system|instruction)s?\b"),
    _t("secret_request", "password passwords contrasena passwort secret key clave "
       "motdepasse", before=80, after=10, pattern=
       r"\b(?:confirm|give|tell|reveal|share|provide|print|repeat|spell|disclose|dame|dime|"
       r"confirma|confirmes|confirmar|conferma|dammi|donne|gib|nenne|what(?:'s| is))\b"
       r"[^.?!\n]{0,40}\b(?:the|your|la|le|das|il|tu|ton|dein|tua|su) "
       r"(?:secret |admin |system )?(?:password|contrasena|mot de passe|passwort|"
       r"parola d'ordine|secret key|clave secreta|secret)\b"),
    _t("fictional_bypass", "educational research fictional hypothetically", before=30,
       pattern=
       r"\b(?:for (?:purely )?(?:educational|research|fictional) purposes|hypothetically|"
       r"in a fictional (?:world|story|setting))\b"),
])

_INTENT = Lexicon([_t(
    "intent", "how ways way steps step guide tutorial instructions instruction recipe teach "
    "show explain give tell help write create generate develop design build make produce "
    "provide best methods method techniques technique strategy strategies can find list run "
    "execute get what where which",
    r"\b(?:how (?:to|do|can|could|would|should|might|does) (?:i |we |you |one |someone |"
    r"a person |people )?|ways? to|steps? (?:to|for)|step-by-step|guide|tutorial|"
    r"instructions?|recipe|teach me|show me|explain how|give (?:me )?|tell me|help me|"
    r"write|create|generate|develop|design|build|make|produce|provide|best way|"
    r"methods? (?:to|for|of)|techniques? (?:to|for)|strateg(?:y|ies) (?:to|for)|find|list|"
    r"run|execute|get (?:me |a |an |some )?|what(?:'s| is) the (?:best|easiest|most)|"
    r"where (?:can|do) i|which .{0,30}(?:can|should) i|can you (?:help|give|list|provide|"
    r"suggest|recommend|explain|describe))", after=40),
    # a request written as a task spec ({"task": ..., "steps": ...}) or in academic words
    _t("intent", "task goal objective instruction request action describe detail outline "
       "synthesis synthesize synthesise procedure protocol", before=2, after=20, pattern=
       r"[\"'](?:task|goal|objective|instruction|request|action)[\"']\s*:|\b(?:describe|"
       r"detail|outline)\b|\bsynthes(?:is|i[sz]e)\b|\b(?:procedure|protocol) for\b")])

# The same in Spanish, French and German (accents stripped by the normaliser).
_INTENT_ES_FR_DE = Lexicon([_t(
    "intent", "como comment wie dime dis explica explique explain erklare erklar pasos etapes "
    "schritte instrucciones anleitung receta recette rezept escribe ecris schreibe dame donne "
    "gib da crea cree erstelle entwickle entwirf disena concois developpe desarrolla genera "
    "redacta redige verfasse instructions sag",
    r"\b(?:como (?:puedo |se puede |podria |se )?\w+(?:ar|er|ir|o)\b|comment (?:puis-je |"
    r"peut-on |faire pour )?\w+(?:er|ir|re)\b|"
    r"wie (?:kann|konnte|baue|mache|stelle|bekomme|verwische|entwerfe|nutze) (?:ich|man)|"
    r"sag(?:en sie)? mir|dime como|dis-moi comment|"
    r"explica(?:me)?|explique(?:-moi)?|erklar\w*|pasos para|etapes pour|schritt fur schritt|"
    r"instrucciones (?:para|de)|anleitung|receta|recette|rezept|escribe|ecris|schreibe|"
    r"dame|donne-moi|gib mir|da instrucciones|donne des instructions|gib (?:eine|mir eine) "
    r"anleitung|crea|cree|erstelle|entwickle|entwirf|disena|concois|developpe|desarrolla|"
    r"genera|redacta|redige|verfasse)\b", after=40)])

_DEFENSIVE = Lexicon([_t(
    "defensive", "protect protecting defend defending prevent preventing prevention "
    "recognise recognize warning signs awareness mitigate mitigating mitigation safeguard "
    "safeguards harden hardening history side symptoms treatment support cope recover "
    "recovery drug safe recommended usual help stay report detect proteger protejo prevenir "
    "evitar eviter schutze schutzen verhindern vermeiden sintomas symptomes symptome",
    r"\b(?:protect(?:ing)? (?:myself|yourself|ourselves|my|our|your|the|children|kids|"
    r"against|from|people)|defend(?:ing)? (?:against|my|our)|prevent(?:ing|ion)?\b|"
    r"recogni[sz]e|warning signs|signs (?:of|that)|awareness|mitigat\w+|safeguard\w*|"
    r"harden\w*|history of|side effects|symptoms of|treatment (?:of|for|options)|"
    r"drug interactions|(?:safe|recommended|usual|maximum safe) (?:daily )?"
    r"(?:dose|dosage|amount)|support (?:someone|a friend|victims|survivors)|cope with|"
    r"recover(?:y)? from|how (?:can|do|should) (?:i|we) help|stay safe|report (?:it|abuse|"
    r"a crime|this|them|to)|detect(?:s|ing)?\b|proteger|protejo|prevenir|evitar|eviter|"
    r"schutzen?|verhindern|vermeiden|sintomas|symptomes|symptome)", before=30, after=40)])


def rule_evidence(scan: Scan) -> tuple[dict[str, float], list[RuleHit], dict[str, float]]:
    """Log-odds each label gets from the rules, the rules that matched, and the hazard
    categories found.

    Args:
        scan: the scanned, normalised text.

    Returns:
        ``({label: log_odds}, hits, {category: weight})`` for labels ``harmful``,
        ``jailbreak``, ``injection``.
    """
    boost = {"harmful": 0.0, "jailbreak": 0.0, "injection": 0.0}
    hits: list[RuleHit] = []
    names = _RULES.keys(scan)
    if "\\n" in scan.text and _LITERAL_NEWLINE.search(scan.text):  # "\n" typed out
        names.add("literal_newline")
    if _CJK_OVERRIDE.search(scan.text):  # no spaces between CJK words: not a scan trigger
        names.add("override_other")
    for name in sorted(names):
        label, weight = _WEIGHTS[name]
        hits.append(RuleHit(name, label, weight))
        boost[label] = max(boost[label], weight)
    hazards = categorise(scan)
    if hazards:
        w, name = _hazard_evidence(scan)
        hits.append(RuleHit(name, "harmful", round(w, 3)))
        boost["harmful"] += w
    return boost, hits, hazards


def _sentences(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of each sentence (ended by ``.``, ``!``, ``?`` or a line break)."""
    out, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        out.append((start, m.end()))
        start = m.end()
    if start < len(text):
        out.append((start, len(text)))
    return out


def _hazard_evidence(scan: Scan) -> tuple[float, str]:
    """The log-odds the hazard terms add to ``harmful``, and the rule's name.

    Each sentence with a hazard term is weighed on its own and the strongest counts, so a
    defensive or educational cue in one sentence ("I teach a safety class.") never cancels an
    explicit request in another. Within a sentence the cue cancels the evidence (or, when the
    sentence opens with it, "How can I protect ...", counts against ``harmful``) unless the
    sentence asks for the hazard outright: a request ("explain how to", "give me") followed
    by the hazard term with no defensive cue between them.
    """
    found = [(HAZARD_WEIGHTS[t.key], a, b) for t, a, b in HAZARD_LEXICON.find(scan)]
    intents = [(a, b) for lex in (_INTENT, _INTENT_ES_FR_DE) for _, a, b in lex.find(scan)]
    cues = [(a, b) for _, a, b in _DEFENSIVE.find(scan)]
    intent = bool(intents)
    evasion = bool(_EVASION.search(scan.lower))
    best: tuple[float, str] | None = None
    for lo, hi in _sentences(scan.lower):
        inside = [(w, a, b) for w, a, b in found if lo <= a < hi]
        if not inside:
            continue
        w = max(x for x, _, _ in inside) * (1.0 if intent else 0.4)
        name = "hazard_terms" + ("+intent" if intent else "")
        here = [(a, b) for a, b in cues if lo <= a < hi]
        if here and not evasion:
            asks = [(m.start(), m.end()) for m in _REQUEST.finditer(scan.lower, lo, hi)]
            explicit = any(ia < ha and ha - ib <= _EXPLICIT_GAP
                           and not any(ib <= ca < ha for ca, _ in here)
                           for _, ha, _ in inside for ia, ib in asks)
            if explicit:
                name += "+explicit"
            else:
                opens = _DEFENSIVE_START.match(scan.lower, lo)
                w = -_DEFENSIVE_WEIGHT if opens else 0.0
                name += "-defensive"
        if best is None or w > best[0]:
            best = (w, name)
    assert best is not None  # categorise() found a term, so some sentence holds one
    return best


def categorise(scan: Scan) -> dict[str, float]:
    """Hazard categories whose terms occur in the text, with each category's weight.

    Args:
        scan: the scanned, normalised text.

    Returns:
        ``{"S9": 3.0, ...}``; empty if no hazard term occurs.
    """
    return {cat: HAZARD_WEIGHTS[cat] for cat in HAZARD_LEXICON.keys(scan)}
