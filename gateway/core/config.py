"""The gateway's configuration: one TOML file read into one frozen, validated Config."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from gateway.core.durations import format_duration
from gateway.core.errors import ConfigError
from gateway.core.limits import (
    MIME_OVERHEAD,
    IntakeLimits,
    MimeLimits,
    XmlLimits,
    derived_plaintext_cap,
)
from gateway.core.tomlread import Table, load_toml
from gateway.core.vocabulary import CHANNELS, PRIORITIES, ROLES, SchemaSetSpec

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
BUILTIN_XSD = PROJECT_ROOT / "xsd"
BUILTIN_FORMS = PROJECT_ROOT / "forms"
BUILTIN_SET = "builtin"
ENV_VAR = "GATEWAY_CONFIG"
DEFAULT_LOCATION = Path("config") / "gateway.toml"
KEEP_SESSIONS_MAX = timedelta(minutes=5)  # [outbound] keep_sessions (RFC 5321 4.5.3.2.7)

PARTNER_CHANNELS = tuple(channel for channel in CHANNELS if channel != "any")
_COUNTRY = r"[A-Z]{2}"
_BUREAU = r"[A-Z]{2}-[A-Z][A-Z0-9]{1,15}"
_ADDRESS = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[?[0-9A-Fa-f:.]+\]?"
_FINGERPRINT = r"[0-9A-F]{40}|[0-9A-F]{64}"
_NAME = r"[a-z][a-z0-9_-]{0,31}"
_MAILBOX = r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Identity:
    """Who we are: our country, our e-mail address, and our bureau code on each channel."""

    country: str
    address: str
    bureaux: Mapping[str, str]


@dataclass(frozen=True)
class Paths:
    gnupg_home: Path
    spool: Path


@dataclass(frozen=True)
class OpenPGPSettings:
    """Our signing key and how it is protected. The passphrase itself never sits in this file."""

    fingerprint: str | None = None
    passphrase_file: Path | None = None
    passphrase_env: str | None = None
    s2k_count: int | None = None
    key_algorithm: str = "ed25519"


@dataclass(frozen=True)
class Listen:
    """The inbound SMTP server."""

    host: str = "127.0.0.1"
    port: int = 2525
    hostname: str = "gateway.invalid"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_message_bytes: int = 10 * 1024 * 1024
    max_sessions: int = 50
    # Sessions one client address may hold at once, and the sessions only the addresses of
    # partners (their ``networks``, or any address once a partner has authenticated by MAIL FROM
    # where it names none) may take: strangers never get the last ones.
    max_sessions_per_address: int = 10
    reserved_for_partners: int = 10  # unset in the file: a fifth of max_sessions
    idle_timeout: timedelta = timedelta(seconds=60)
    session_timeout: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class Relay:
    """An optional smarthost for outbound mail; partners are otherwise reached directly."""

    host: str
    port: int = 25
    require_tls: bool = True
    # CA certificates (PEM) that the relay's certificate must chain to; None: the system's.
    tls_ca: Path | None = None


@dataclass(frozen=True)
class Partner:
    """A foreign bureau: where it is reached and the OpenPGP key pinned to it."""

    code: str
    channel: str
    country: str
    address: str
    smtp_host: str
    smtp_port: int
    fingerprint: str
    require_tls: bool = True
    receipt_window: timedelta = timedelta(minutes=15)
    # CA certificates (PEM) that its SMTP server's certificate must chain to; None: the system's.
    tls_ca: Path | None = None
    # The client addresses its mail comes from; empty: any. Where set, its MAIL FROM from
    # elsewhere is refused, and these addresses may use the sessions reserved for partners.
    networks: tuple[IPNetwork, ...] = ()

    def sends_from(self, address: str) -> bool:
        """Whether a client at ``address`` may send as this partner."""
        return not self.networks or in_networks(address, self.networks)


def in_networks(address: str, networks: Sequence[IPNetwork]) -> bool:
    """Whether the IP ``address`` lies in one of ``networks`` (False for what is no address)."""
    try:
        client = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(client in network for network in networks)


@dataclass(frozen=True)
class Desk:
    """A national handlers' desk: its Maildir, its outbox folder and, optionally, an e-mail
    address for notices."""

    name: str
    maildir: Path
    email: str | None = None
    # Forms dropped here (*.xml) are sent by `gateway serve`; None: <spool>/outbox/<name>.
    outbox: Path | None = None
    # The desk's mailbox user in Dovecot when [desk_delivery] method = "lmtp"; None: its name.
    mailbox: str | None = None

    @property
    def mailbox_user(self) -> str:
        return self.mailbox or self.name


DESK_METHODS = ("maildir", "lmtp")


@dataclass(frozen=True)
class DeskDelivery:
    """How desk copies reach the handlers: into each desk's Maildir (one node, the default) or
    by LMTP to Dovecot (several nodes; handlers read over IMAP). With LMTP, a copy that may have
    been delivered before (a retry) is looked for over IMAP, as a master user, by its
    Message-ID first. ``lmtp`` and ``imap`` are "host:port" or, for LMTP, a socket path."""

    method: str = "maildir"
    lmtp: str | None = None
    imap: str | None = None
    imap_user: str | None = None  # a Dovecot master user, logged in as "<mailbox>*<user>"
    imap_password_file: Path | None = None
    imap_tls: bool = True  # STARTTLS on the IMAP check (false only on loopback)
    lmtp_tls: bool = True  # STARTTLS on LMTP over TCP (never on a socket path)
    tls_ca: Path | None = None  # CA certificates (PEM) of Dovecot's certificate; None: the system's
    timeout: timedelta = timedelta(seconds=60)  # connect, and each command

    @property
    def lmtp_socket(self) -> str | None:
        """The socket path when ``lmtp`` is one (it starts with /)."""
        return self.lmtp if self.lmtp is not None and self.lmtp.startswith("/") else None


@dataclass(frozen=True)
class Outbound:
    """How forms leave: retries with exponential backoff and jitter, connections, receipts."""

    retry_first: timedelta = timedelta(minutes=1)
    retry_max: timedelta = timedelta(hours=1)
    give_up_after: timedelta = timedelta(days=5)
    jitter: float = 0.2  # each delay is drawn from [d * (1 - jitter), d * (1 + jitter)]
    connections_per_partner: int = 2
    timeout: timedelta = timedelta(minutes=1)  # connect, and each SMTP command
    # How long a partner's idle sessions stay open for the next delivery pass; zero: closed
    # when each pass ends. At most KEEP_SESSIONS_MAX: servers drop idle clients after 5 minutes.
    keep_sessions: timedelta = timedelta(seconds=30)
    receipt_resends: int = 2  # re-sends when the receipt does not come in the partner's window


@dataclass(frozen=True)
class DeadlineSettings:
    """Reminders and escalation of reply deadlines."""

    duty_desk: str | None = None  # escalations go here; None: the desk that owns the message
    reminders: tuple[float, ...] = (0.5, 0.9)  # where a form's policy names none
    escalate_every: timedelta = timedelta(hours=1)  # after the breach, until the deadline closes


@dataclass(frozen=True)
class SchedulerSettings:
    """The scheduled jobs of `gateway serve`."""

    sweep_every: timedelta = timedelta(seconds=15)
    supervisor_desk: str | None = None  # key-expiry warnings and the daily report
    report_at: str = "06:00"  # UTC time of the daily statistics report
    key_warning: timedelta = timedelta(days=30)  # warn this long before a partner key expires


@dataclass(frozen=True)
class StoreSettings:
    """Where an accepted message's bytes are kept: ``spool`` (the node's durable spool, the
    one-node default) or ``database`` (committed to PostgreSQL with its ledger row, so that no
    accepted message depends on one machine)."""

    bodies: str = "spool"


@dataclass(frozen=True)
class ClusterSettings:
    """Several gateways on one PostgreSQL: this node's name (empty: host name and pid), how long
    a lease lives without its node's heartbeat, and how often the heartbeat renews it."""

    node: str = ""
    lease_seconds: int = 30
    heartbeat_seconds: int = 5

    def node_name(self) -> str:
        """This node's name: the configured one, else the host's name and the process id."""
        if self.node:
            return self.node
        host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())
        return f"{host[:50]}-{os.getpid()}"

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.lease_seconds)


@dataclass(frozen=True)
class RetentionRule:
    """How long spooled originals and desk copies are kept; an unset field matches anything.
    The first matching rule applies; without one, nothing is purged."""

    keep: timedelta
    channel: str | None = None
    form: str | None = None

    def matches(self, channel: str, form: str) -> bool:
        return (self.channel is None or self.channel == channel) and (
            self.form is None or self.form == form
        )


@dataclass(frozen=True)
class Route:
    """Which desk gets a message; an unset field matches anything. The first matching route wins."""

    desk: str
    channel: str | None = None
    form: str | None = None
    priority: str | None = None
    partner: str | None = None

    def matches(self, channel: str, form: str, priority: str, partner: str) -> bool:
        return all(
            wanted is None or wanted == actual
            for wanted, actual in (
                (self.channel, channel),
                (self.form, form),
                (self.priority, priority),
                (self.partner, partner),
            )
        )


@dataclass(frozen=True)
class AccessSettings:
    """The console's and the API's users: sessions, lockout, passwords, the second factor."""

    session_idle: timedelta = timedelta(minutes=30)  # a session unused this long ends
    session_absolute: timedelta = timedelta(hours=12)  # and any session ends this long after login
    lockout_after: int = 5  # failed logins in a row before the account is locked
    lockout_for: timedelta = timedelta(minutes=5)  # the first lock; each further failure doubles it
    lockout_max: timedelta = timedelta(hours=24)
    # Roles whose users must give a TOTP code at login (the others may enrol one).
    totp_required: tuple[str, ...] = ("supervisor", "duty_officer", "operator", "auditor")
    # 32 random bytes that encrypt the TOTP secrets in the ledger; made on first enrolment.
    totp_key_file: Path = Path("var/totp.key")
    password_min_length: int = 12
    # argon2id cost (RFC 9106's second recommended option by default); OWASP's floor as minimum.
    password_time_cost: int = 3
    password_memory_kib: int = 65536


@dataclass(frozen=True)
class WebSettings:
    """The console (`gateway web`): where it listens, TLS or the reverse proxy in front of it,
    the bureau's time zone, the login rate per client address, the worklist's page."""

    host: str = "127.0.0.1"
    port: int = 8080
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # Behind a reverse proxy: the proxy's addresses, whose X-Forwarded-For and -Proto are
    # believed (from any other address they are ignored).
    behind_proxy: bool = False
    trusted_proxies: tuple[IPNetwork, ...] = ()
    time_zone: str = "UTC"  # an IANA name such as Europe/Bucharest: the times shown
    login_attempts_per_minute: int = 10  # per client address, before 429
    page_size: int = 50
    # The worklist page asks this often whether anything changed (0: never; its Refresh button).
    live_seconds: int = 5
    # A data-subject report's PDF (WeasyPrint, tens of ms a row) is made in a thread: at most
    # this many exchanges (past it the console refuses and points to `gateway subject-report`),
    # and at most this many at once in one console process (another asked meanwhile gets 503).
    subject_pdf_rows: int = 2000
    subject_pdf_at_once: int = 1

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True)
class ApiSettings:
    """The HTTP API (/api/v1 of `gateway web`)."""

    # An Idempotency-Key is kept this long after its form was queued: a client's retry within
    # it gets the first answer; `gateway serve` deletes older keys (hourly).
    idempotency_keep: timedelta = timedelta(hours=24)


IDEMPOTENCY_HOURS_MAX = 24 * 366
LIVE_SECONDS_MAX = 300
SUBJECT_PDF_ROWS_MAX = 20_000


@dataclass(frozen=True)
class MetricsSettings:
    """The Prometheus metrics of `gateway serve`: where they are served (``listen`` as
    "host:port"; empty: not served) and the free space under the spool below which the
    disk alert fires."""

    host: str | None = "127.0.0.1"
    port: int = 9464
    disk_floor_mb: int = 1024

    @property
    def enabled(self) -> bool:
        return self.host is not None


@dataclass(frozen=True)
class LoggingSettings:
    """The log of `gateway serve` and `gateway web`: ``format`` plain (one line of words per
    event) or json (one JSON object per line, with a message's fields)."""

    format: str = "plain"


@dataclass(frozen=True)
class Config:
    identity: Identity
    paths: Paths
    openpgp: OpenPGPSettings
    database_url: str
    listen: Listen
    relay: Relay | None
    partners: tuple[Partner, ...]
    desks: tuple[Desk, ...]
    routes: tuple[Route, ...]
    schema_sets: tuple[SchemaSetSpec, ...]
    form_folders: tuple[tuple[Path, str], ...]
    xml: XmlLimits = field(default_factory=XmlLimits)
    intake: IntakeLimits = field(default_factory=IntakeLimits)
    outbound: Outbound = field(default_factory=Outbound)
    deadlines: DeadlineSettings = field(default_factory=DeadlineSettings)
    scheduler: SchedulerSettings = field(default_factory=SchedulerSettings)
    retention: tuple[RetentionRule, ...] = ()
    access: AccessSettings = field(default_factory=AccessSettings)
    web: WebSettings = field(default_factory=WebSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    desk_delivery: DeskDelivery = field(default_factory=DeskDelivery)
    store: StoreSettings = field(default_factory=StoreSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    source: Path | None = None

    def partner(self, code: str) -> Partner:
        for partner in self.partners:
            if partner.code == code:
                return partner
        raise KeyError(f"unknown partner {code!r}")

    def partner_by_address(self, address: str) -> Partner | None:
        wanted = address.lower()
        return next((p for p in self.partners if p.address.lower() == wanted), None)

    def desk(self, name: str) -> Desk:
        for desk in self.desks:
            if desk.name == name:
                return desk
        raise KeyError(f"unknown desk {name!r}")

    def outbox(self, desk: Desk) -> Path:
        """The folder whose forms `gateway serve` sends for ``desk``."""
        return desk.outbox or self.paths.spool / "outbox" / desk.name

    def partner_by_bureau(self, bureau: str) -> Partner | None:
        return next((p for p in self.partners if p.code == bureau), None)

    def keep_for(self, channel: str, form: str) -> timedelta | None:
        """How long a message's spooled files are kept; None: for ever."""
        return next((r.keep for r in self.retention if r.matches(channel, form)), None)


def locate(explicit: str | None) -> Path | None:
    """The configuration file: ``-c``, then $GATEWAY_CONFIG, then ./config/gateway.toml."""
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    return DEFAULT_LOCATION if DEFAULT_LOCATION.is_file() else None


def load_required(explicit: str | None) -> Config:
    """The configuration a command cannot do without; a ConfigError when there is none."""
    path = locate(explicit)
    if path is None:
        raise ConfigError(
            str(DEFAULT_LOCATION),
            "",
            "no configuration: copy config/gateway.example.toml there, or use -c FILE",
        )
    return load(path)


def builtin_schema_sets() -> tuple[tuple[SchemaSetSpec, ...], tuple[tuple[Path, str], ...]]:
    """The schema set and form folder shipped with the gateway."""
    builtin = SchemaSetSpec(BUILTIN_SET, BUILTIN_XSD, bounded_depth=True)
    return (builtin,), ((BUILTIN_FORMS, BUILTIN_SET),)


def load(path: Path) -> Config:
    """Read and check a configuration file; any problem is a ConfigError naming file and key."""
    table = load_toml(path)
    base = path.resolve().parent
    identity = _identity(table.table("identity", required=True))
    paths_table = table.table("paths")
    paths = Paths(
        gnupg_home=paths_table.path("gnupg_home", base, base / "var" / "gnupg"),
        spool=paths_table.path("spool", base, base / "spool"),
    )
    paths_table.finish()
    openpgp = _openpgp(table.table("openpgp"), base)
    database = table.table("database")
    database_url = database.text(
        "url",
        f"sqlite:///{paths.spool / 'ledger.db'}",
        pattern=r"(sqlite|postgresql)(\+\w+)?://.*",
        hint="an SQLAlchemy URL, sqlite:///FILE or postgresql+psycopg://...",
    )
    database_url = sqlite_url_from(database_url, base)
    database.finish()
    smtp = table.table("smtp")
    listen = _listen(smtp.table("listen"), base)
    relay = _relay(smtp.table("relay"), base) if smtp.has("relay") else None
    smtp.finish()
    partners = tuple(_partner(item, base) for item in table.tables("partners"))
    desks = tuple(_desk(item, base) for item in table.tables("desks"))
    routes = tuple(_route(item) for item in table.tables("routes"))
    schema_sets, form_folders = builtin_schema_sets()
    for item in table.tables("schema_sets"):
        spec, forms = _schema_set(item, base)
        schema_sets += (spec,)
        if forms is not None:
            form_folders += ((forms, spec.name),)
    xml = _xml_limits(table.table("xml"))
    intake = _intake_limits(table.table("limits"), listen, xml)
    outbound = _outbound(table.table("outbound"))
    deadline_settings = _deadline_settings(table.table("deadlines"))
    scheduler = _scheduler(table.table("scheduler"))
    retention = tuple(_retention(item) for item in table.tables("retention"))
    access = _access(table.table("access"), base)
    web = _web(table.table("web"), base)
    api = _api(table.table("api"))
    metrics = _metrics(table.table("metrics"))
    log_settings = _logging(table.table("logging"))
    desk_delivery = _desk_delivery(table.table("desk_delivery"), base)
    store, cluster = _store(table.table("store"), database_url), _cluster(table.table("cluster"))
    table.finish()
    _check_unique(table, "partners", "code", [p.code for p in partners])
    _check_unique(table, "partners", "address", [p.address.lower() for p in partners])
    _check_unique(table, "desks", "name", [d.name for d in desks])
    _check_unique(table, "schema_sets", "name", [s.name for s in schema_sets])
    partner_codes = {p.code for p in partners}
    desk_names = {d.name for d in desks}
    for index, route in enumerate(routes):
        if route.desk not in desk_names:
            table.fail(f"routes[{index}].desk", f"unknown desk {route.desk!r}")
        if route.partner is not None and route.partner not in partner_codes:
            table.fail(f"routes[{index}].partner", f"unknown partner {route.partner!r}")
    for key, desk_name in (
        ("deadlines.duty_desk", deadline_settings.duty_desk),
        ("scheduler.supervisor_desk", scheduler.supervisor_desk),
    ):
        if desk_name is not None and desk_name not in desk_names:
            table.fail(key, f"unknown desk {desk_name!r}")
    return Config(
        identity=identity,
        paths=paths,
        openpgp=openpgp,
        database_url=database_url,
        listen=listen,
        relay=relay,
        partners=partners,
        desks=desks,
        routes=routes,
        schema_sets=schema_sets,
        form_folders=form_folders,
        xml=xml,
        intake=intake,
        outbound=outbound,
        deadlines=deadline_settings,
        scheduler=scheduler,
        retention=retention,
        access=access,
        web=web,
        api=api,
        metrics=metrics,
        logging=log_settings,
        desk_delivery=desk_delivery,
        store=store,
        cluster=cluster,
        source=path,
    )


def sqlite_url_from(url: str, base: Path) -> str:
    """``url`` with a relative SQLite file (``sqlite:///var/ledger.db``) taken from ``base``, the
    configuration file's folder, like every other relative path; anything else as it is
    (``sqlite:////abs/file``, ``sqlite://`` and ``:memory:``, ``file:`` URIs, PostgreSQL)."""
    match = re.fullmatch(r"(sqlite(?:\+\w+)?:///)([^?]*)(\?.*)?", url, flags=re.DOTALL)
    if match is None:
        return url
    scheme, database, query = match.group(1), match.group(2), match.group(3) or ""
    if not database or database.startswith(("/", "file:")) or database == ":memory:":
        return url
    return f"{scheme}{os.path.normpath(base / database)}{query}"


def _identity(table: Table) -> Identity:
    identity = Identity(
        country=table.text("country", pattern=_COUNTRY, hint="an ISO 3166-1 alpha-2 code"),
        address=table.text("address", pattern=_ADDRESS, hint="an e-mail address"),
        bureaux=_bureaux(table.table("bureaux", required=True)),
    )
    table.finish()
    for channel, code in identity.bureaux.items():
        if not code.startswith(identity.country + "-"):
            table.fail(f"bureaux.{channel}", f"{code!r} does not start with our country code")
    return identity


def _bureaux(table: Table) -> dict[str, str]:
    bureaux = {
        channel: table.text(channel, pattern=_BUREAU, hint="a bureau code such as RO-SIRENE")
        for channel in PARTNER_CHANNELS
        if table.has(channel)
    }
    table.finish()
    if not bureaux:
        table.fail(
            "", f"name our bureau code on at least one channel ({', '.join(PARTNER_CHANNELS)})"
        )
    return bureaux


def _openpgp(table: Table, base: Path) -> OpenPGPSettings:
    settings = OpenPGPSettings(
        fingerprint=_optional_fingerprint(table, "fingerprint"),
        passphrase_file=table.path("passphrase_file", base, None),
        passphrase_env=table.text(
            "passphrase_env", None, pattern=r"[A-Za-z_][A-Za-z0-9_]*", hint="a variable name"
        ),
        s2k_count=table.integer("s2k_count", None, minimum=1024, maximum=65011712),
        key_algorithm=table.text("key_algorithm", "ed25519", choices=("ed25519", "rsa3072")),
    )
    table.finish()
    if settings.passphrase_file is not None and settings.passphrase_env is not None:
        table.fail("passphrase_env", "name the passphrase file or the variable, not both")
    return settings


def _listen(table: Table, base: Path) -> Listen:
    defaults = Listen()
    listen = Listen(
        host=table.text("host", defaults.host, pattern=_HOST, hint="a host name or IP address"),
        port=table.integer("port", defaults.port, minimum=0, maximum=65535),
        hostname=table.text("hostname", defaults.hostname, pattern=_HOST, hint="a host name"),
        tls_cert=table.path("tls_cert", base, None),
        tls_key=table.path("tls_key", base, None),
        max_message_bytes=table.integer(
            "max_message_bytes", defaults.max_message_bytes, minimum=1024, maximum=1 << 30
        ),
        max_sessions=table.integer("max_sessions", defaults.max_sessions, minimum=1, maximum=10000),
        max_sessions_per_address=table.integer(
            "max_sessions_per_address", defaults.max_sessions_per_address, minimum=1, maximum=10000
        ),
        reserved_for_partners=table.integer(
            "reserved_for_partners",
            table.integer("max_sessions", defaults.max_sessions) // 5,
            minimum=0,
            maximum=10000,
        ),
        idle_timeout=table.duration("idle_timeout", defaults.idle_timeout),
        session_timeout=table.duration("session_timeout", defaults.session_timeout),
    )
    table.finish()
    if listen.reserved_for_partners >= listen.max_sessions:
        table.fail("reserved_for_partners", "must be smaller than max_sessions")
    if (listen.tls_cert is None) != (listen.tls_key is None):
        table.fail(
            "tls_key" if listen.tls_key is None else "tls_cert", "tls_cert and tls_key go together"
        )
    return listen


def _relay(table: Table, base: Path) -> Relay:
    relay = Relay(
        host=table.text("host", pattern=_HOST, hint="a host name or IP address"),
        port=table.integer("port", 25, minimum=1, maximum=65535),
        require_tls=table.boolean("require_tls", True),
        tls_ca=table.path("tls_ca", base, None),
    )
    table.finish()
    return relay


def _partner(table: Table, base: Path) -> Partner:
    partner = Partner(
        code=table.text("code", pattern=_BUREAU, hint="a bureau code such as NO-SIRENE"),
        channel=table.text("channel", choices=PARTNER_CHANNELS),
        country=table.text("country", pattern=_COUNTRY, hint="an ISO 3166-1 alpha-2 code"),
        address=table.text("address", pattern=_ADDRESS, hint="an e-mail address"),
        smtp_host=table.text("smtp_host", pattern=_HOST, hint="a host name or IP address"),
        smtp_port=table.integer("smtp_port", 25, minimum=1, maximum=65535),
        fingerprint=_fingerprint(table),
        require_tls=table.boolean("require_tls", True),
        receipt_window=table.duration("receipt_window", timedelta(minutes=15)),
        tls_ca=table.path("tls_ca", base, None),
        networks=_networks(table),
    )
    table.finish()
    if not partner.code.startswith(partner.country + "-"):
        table.fail(
            "code", f"{partner.code!r} does not start with the partner's country {partner.country}"
        )
    return partner


def _networks(table: Table, key: str = "networks") -> tuple[IPNetwork, ...]:
    networks = []
    for index, text in enumerate(table.str_list(key, ())):
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            table.fail(f"{key}[{index}]", f"{text!r} is not an address or a CIDR network")
    return tuple(networks)


def _fingerprint(table: Table) -> str:
    if not table.has("fingerprint"):
        table.fail("fingerprint", "missing: the partner's pinned OpenPGP primary-key fingerprint")
    return str(_optional_fingerprint(table, "fingerprint"))


def _optional_fingerprint(table: Table, key: str) -> str | None:
    value = table.text(key, None)
    if value is None:
        return None
    value = value.replace(" ", "").upper()
    if not re.fullmatch(_FINGERPRINT, value):
        table.fail(key, "must be the 40 (v4) or 64 (v5/v6) hex digits of the primary key")
    return str(value)


def _desk(table: Table, base: Path) -> Desk:
    desk = Desk(
        name=table.text("name", pattern=_NAME, hint="lower-case letters, digits, - and _"),
        maildir=table.path("maildir", base),
        email=table.text("email", None, pattern=_ADDRESS, hint="an e-mail address"),
        outbox=table.path("outbox", base, None),
        mailbox=table.text(
            "mailbox", None, pattern=_MAILBOX, hint="a Dovecot user name such as sirene"
        ),
    )
    table.finish()
    return desk


def _logging(table: Table) -> LoggingSettings:
    settings = LoggingSettings(format=table.text("format", "plain", choices=("plain", "json")))
    table.finish()
    return settings


def _desk_delivery(table: Table, base: Path) -> DeskDelivery:
    defaults = DeskDelivery()
    endpoint = rf"(?:{_HOST}):[0-9]{{1,5}}"
    settings = DeskDelivery(
        method=table.text("method", defaults.method, choices=DESK_METHODS),
        lmtp=table.text(
            "lmtp", None, pattern=rf"{endpoint}|/\S+", hint='"host:port" or a socket path /...'
        ),
        imap=table.text("imap", None, pattern=endpoint, hint='"host:port"'),
        imap_user=table.text("imap_user", None, pattern=_MAILBOX, hint="a Dovecot master user"),
        imap_password_file=table.path("imap_password_file", base, None),
        imap_tls=table.boolean("imap_tls", defaults.imap_tls),
        lmtp_tls=table.boolean("lmtp_tls", defaults.lmtp_tls),
        tls_ca=table.path("tls_ca", base, None),
        timeout=table.duration("timeout", defaults.timeout),
    )
    table.finish()
    if settings.timeout <= timedelta(0):
        table.fail("timeout", "must be longer than zero")
    for key in ("lmtp", "imap"):
        value = getattr(settings, key)
        if (
            value is not None
            and not value.startswith("/")
            and int(value.rpartition(":")[2]) > 65535
        ):
            table.fail(key, f"port {value.rpartition(':')[2]} is above 65535")
    if settings.method == "lmtp":
        for key, why in (
            ("lmtp", "where Dovecot's LMTP listens"),
            ("imap", "where Dovecot's IMAP listens, to look for a copy before a re-delivery"),
            ("imap_user", "a Dovecot master user that may read the desks' mailboxes"),
            ("imap_password_file", "the file holding that master user's password"),
        ):
            if getattr(settings, key) is None:
                table.fail(key, f'missing: method = "lmtp" needs {why}')
    return settings


def _route(table: Table) -> Route:
    route = Route(
        desk=table.text("desk"),
        channel=table.text("channel", None, choices=PARTNER_CHANNELS),
        form=table.text("form", None),
        priority=table.text("priority", None, choices=PRIORITIES),
        partner=table.text("partner", None),
    )
    table.finish()
    return route


def _schema_set(table: Table, base: Path) -> tuple[SchemaSetSpec, Path | None]:
    name = table.text("name", pattern=_NAME, hint="lower-case letters, digits, - and _")
    if name == BUILTIN_SET:
        table.fail("name", f"{BUILTIN_SET!r} is the gateway's own set and cannot be redefined")
    folder = table.path("path", base)
    catalog = table.path("catalog", folder, None)
    if catalog is None and (folder / "catalog.xml").is_file():
        catalog = folder / "catalog.xml"
    spec = SchemaSetSpec(
        name=name, path=folder, catalog=catalog, schemas=table.str_list("schemas", ())
    )
    forms = table.path("forms", base, None)
    table.finish()
    if not spec.schemas and forms is None:
        table.fail("schemas", "name the entry schemas of the set, or a forms folder that does")
    return spec, forms


def _xml_limits(table: Table) -> XmlLimits:
    defaults = XmlLimits()
    limits = XmlLimits(
        max_bytes=table.integer("max_bytes", defaults.max_bytes, minimum=1024, maximum=64 << 20),
        max_depth=table.integer("max_depth", defaults.max_depth, minimum=4, maximum=200),
        max_text_bytes=table.integer(
            "max_text_bytes", defaults.max_text_bytes, minimum=256, maximum=64 << 20
        ),
        max_errors=table.integer("max_errors", defaults.max_errors, minimum=1, maximum=1000),
    )
    table.finish()
    return limits


def _intake_limits(table: Table, listen: Listen, xml: XmlLimits) -> IntakeLimits:
    defaults, mime = IntakeLimits(), MimeLimits()
    derived = derived_plaintext_cap(listen.max_message_bytes, xml.max_bytes)
    limits = IntakeLimits(
        max_plaintext_bytes=table.integer(
            "max_plaintext_bytes", derived, minimum=64 << 10, maximum=1 << 31
        ),
        max_expansion=table.integer(
            "max_expansion", defaults.max_expansion, minimum=2, maximum=100_000
        ),
        expansion_floor=xml.max_bytes + MIME_OVERHEAD,
        mime=MimeLimits(
            max_depth=table.integer("mime_max_depth", mime.max_depth, minimum=2, maximum=100),
            max_parts=table.integer("mime_max_parts", mime.max_parts, minimum=2, maximum=10_000),
            max_headers=table.integer(
                "mime_max_headers", mime.max_headers, minimum=10, maximum=10_000
            ),
            max_header_bytes=table.integer(
                "mime_max_header_bytes", mime.max_header_bytes, minimum=1024, maximum=1 << 24
            ),
            max_boundary_length=table.integer(
                "mime_max_boundary_length", mime.max_boundary_length, minimum=1, maximum=998
            ),
        ),
    )
    table.finish()
    return limits


def _outbound(table: Table) -> Outbound:
    defaults = Outbound()
    jitter = table.integer("jitter_percent", round(defaults.jitter * 100), minimum=0, maximum=90)
    outbound = Outbound(
        retry_first=table.duration("retry_first", defaults.retry_first),
        retry_max=table.duration("retry_max", defaults.retry_max),
        give_up_after=table.duration("give_up_after", defaults.give_up_after),
        jitter=jitter / 100,
        connections_per_partner=table.integer(
            "connections_per_partner", defaults.connections_per_partner, minimum=1, maximum=100
        ),
        timeout=table.duration("timeout", defaults.timeout),
        keep_sessions=table.duration("keep_sessions", defaults.keep_sessions, allow_zero=True),
        receipt_resends=table.integer(
            "receipt_resends", defaults.receipt_resends, minimum=0, maximum=100
        ),
    )
    table.finish()
    for key in ("retry_first", "retry_max", "give_up_after", "timeout"):
        if getattr(outbound, key) <= timedelta(0):
            table.fail(key, "must be longer than zero")
    if outbound.retry_max < outbound.retry_first:
        table.fail("retry_max", "must not be shorter than retry_first")
    if outbound.keep_sessions > KEEP_SESSIONS_MAX:
        table.fail(
            "keep_sessions",
            f"{format_duration(outbound.keep_sessions)} is above the maximum "
            f"{format_duration(KEEP_SESSIONS_MAX)} (SMTP servers close idle sessions after "
            "5 minutes); PT0S closes them after each pass",
        )
    return outbound


def _deadline_settings(table: Table) -> DeadlineSettings:
    defaults = DeadlineSettings()
    settings = DeadlineSettings(
        duty_desk=table.text("duty_desk", None),
        reminders=table.fraction_list("reminders", defaults.reminders),
        escalate_every=table.duration("escalate_every", defaults.escalate_every),
    )
    table.finish()
    if settings.escalate_every <= timedelta(0):
        table.fail("escalate_every", "must be longer than zero")
    return settings


def _scheduler(table: Table) -> SchedulerSettings:
    defaults = SchedulerSettings()
    settings = SchedulerSettings(
        sweep_every=table.duration("sweep_every", defaults.sweep_every),
        supervisor_desk=table.text("supervisor_desk", None),
        report_at=table.text(
            "report_at", defaults.report_at, pattern=r"([01][0-9]|2[0-3]):[0-5][0-9]", hint="HH:MM"
        ),
        key_warning=table.duration("key_warning", defaults.key_warning),
    )
    table.finish()
    if settings.sweep_every <= timedelta(0):
        table.fail("sweep_every", "must be longer than zero")
    return settings


def _store(table: Table, database_url: str) -> StoreSettings:
    settings = StoreSettings(
        bodies=table.text("bodies", StoreSettings.bodies, choices=("spool", "database"))
    )
    table.finish()
    if settings.bodies == "database" and not database_url.startswith("postgresql"):
        table.fail(
            "bodies",
            '"database" needs the ledger on PostgreSQL ([database] url = "postgresql+psycopg://'
            '..."); on SQLite the bodies stay in the spool',
        )
    return settings


def _cluster(table: Table) -> ClusterSettings:
    defaults = ClusterSettings()
    settings = ClusterSettings(
        node=table.text(
            "node",
            defaults.node,
            pattern=r"[A-Za-z0-9._-]{0,64}",
            hint="1-64 of A-Z a-z 0-9 . _ -",
        ),
        lease_seconds=table.integer("lease_seconds", defaults.lease_seconds, minimum=2),
        heartbeat_seconds=table.integer("heartbeat_seconds", defaults.heartbeat_seconds, minimum=1),
    )
    table.finish()
    if settings.heartbeat_seconds * 2 > settings.lease_seconds:
        table.fail(
            "heartbeat_seconds",
            f"must be at most half of lease_seconds ({settings.lease_seconds}): a lease must "
            "outlive a late heartbeat",
        )
    return settings


def _retention(table: Table) -> RetentionRule:
    rule = RetentionRule(
        keep=table.duration("keep"),
        channel=table.text("channel", None, choices=PARTNER_CHANNELS),
        form=table.text("form", None),
    )
    table.finish()
    if rule.keep <= timedelta(0):
        table.fail("keep", "must be longer than zero")
    return rule


def _access(table: Table, base: Path) -> AccessSettings:
    defaults = AccessSettings()
    settings = AccessSettings(
        session_idle=table.duration("session_idle", defaults.session_idle),
        session_absolute=table.duration("session_absolute", defaults.session_absolute),
        lockout_after=table.integer(
            "lockout_after", defaults.lockout_after, minimum=1, maximum=100
        ),
        lockout_for=table.duration("lockout_for", defaults.lockout_for),
        lockout_max=table.duration("lockout_max", defaults.lockout_max),
        totp_required=table.str_list("totp_required", defaults.totp_required),
        totp_key_file=table.path("totp_key_file", base, base / defaults.totp_key_file),
        password_min_length=table.integer(
            "password_min_length", defaults.password_min_length, minimum=8, maximum=1024
        ),
        password_time_cost=table.integer(
            "password_time_cost", defaults.password_time_cost, minimum=2, maximum=100
        ),
        password_memory_kib=table.integer(
            "password_memory_kib", defaults.password_memory_kib, minimum=19456, maximum=4 << 20
        ),
    )
    table.finish()
    for index, role in enumerate(settings.totp_required):
        if role not in ROLES:
            table.fail(f"totp_required[{index}]", f"{role!r} is not one of {', '.join(ROLES)}")
    for key in ("session_idle", "session_absolute", "lockout_for", "lockout_max"):
        if getattr(settings, key) <= timedelta(0):
            table.fail(key, "must be longer than zero")
    if settings.session_absolute < settings.session_idle:
        table.fail("session_absolute", "must not be shorter than session_idle")
    if settings.lockout_max < settings.lockout_for:
        table.fail("lockout_max", "must not be shorter than lockout_for")
    return settings


def _web(table: Table, base: Path) -> WebSettings:
    defaults = WebSettings()
    web = WebSettings(
        host=table.text("host", defaults.host, pattern=_HOST, hint="a host name or IP address"),
        port=table.integer("port", defaults.port, minimum=0, maximum=65535),
        tls_cert=table.path("tls_cert", base, None),
        tls_key=table.path("tls_key", base, None),
        behind_proxy=table.boolean("behind_proxy", defaults.behind_proxy),
        trusted_proxies=_networks(table, "trusted_proxies"),
        time_zone=table.text("time_zone", defaults.time_zone),
        login_attempts_per_minute=table.integer(
            "login_attempts_per_minute", defaults.login_attempts_per_minute, minimum=1, maximum=1000
        ),
        page_size=table.integer("page_size", defaults.page_size, minimum=5, maximum=500),
        live_seconds=table.integer(
            "live_seconds", defaults.live_seconds, minimum=0, maximum=LIVE_SECONDS_MAX
        ),
        subject_pdf_rows=table.integer(
            "subject_pdf_rows", defaults.subject_pdf_rows, minimum=1, maximum=SUBJECT_PDF_ROWS_MAX
        ),
        subject_pdf_at_once=table.integer(
            "subject_pdf_at_once", defaults.subject_pdf_at_once, minimum=1, maximum=8
        ),
    )
    table.finish()
    if (web.tls_cert is None) != (web.tls_key is None):
        table.fail(
            "tls_key" if web.tls_key is None else "tls_cert", "tls_cert and tls_key go together"
        )
    if web.behind_proxy and not web.trusted_proxies:
        table.fail(
            "trusted_proxies",
            "behind_proxy needs the proxy's addresses (CIDR networks such as 127.0.0.1/32)",
        )
    if web.trusted_proxies and not web.behind_proxy:
        table.fail("trusted_proxies", "only with behind_proxy = true")
    if web.behind_proxy and web.tls:
        table.fail(
            "tls_cert", "behind a proxy the proxy holds the certificate: give one or the other"
        )
    try:
        zoneinfo.ZoneInfo(web.time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        table.fail("time_zone", f"{web.time_zone!r} is not a time zone such as Europe/Bucharest")
    return web


def _api(table: Table) -> ApiSettings:
    hours = table.integer(
        "idempotency_hours",
        int(ApiSettings().idempotency_keep / timedelta(hours=1)),
        minimum=1,
        maximum=IDEMPOTENCY_HOURS_MAX,
    )
    table.finish()
    return ApiSettings(idempotency_keep=timedelta(hours=hours))


def _metrics(table: Table) -> MetricsSettings:
    defaults = MetricsSettings()
    listen = table.text(
        "listen",
        f"{defaults.host}:{defaults.port}",
        pattern=rf"|(?:{_HOST}):[0-9]{{1,5}}",
        hint='"host:port" such as "127.0.0.1:9464", or "" for no metrics',
    )
    floor = table.integer("disk_floor_mb", defaults.disk_floor_mb, minimum=0)
    table.finish()
    if not listen:
        return MetricsSettings(host=None, port=0, disk_floor_mb=floor)
    host, _, port = listen.rpartition(":")
    if int(port) > 65535:
        table.fail("listen", f"port {port} is above 65535")
    return MetricsSettings(host=host.strip("[]"), port=int(port), disk_floor_mb=floor)


def _check_unique(table: Table, section: str, key: str, values: list[str]) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            table.fail(f"{section}[{index}].{key}", f"{value!r} appears twice")
        seen.add(value)
