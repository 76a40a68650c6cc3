-- lync.lua: lyncpcap's view of Lync 2013 / Skype for Business sign-ins, as a Wireshark post-dissector.
--
-- Adds a `lync` tree to every frame of a sign-in step (lync.step, lync.auth, lync.result, lync.user,
-- lync.client_kind, lync.diagnostic) with the step and authentication names of lyncpcap's CONTRACT,
-- classified the way lyncpcap/steps/*.py does. It also decodes the MS-SIPAE `gssapi-data` of SIP
-- authentication headers and hands it to Wireshark's NTLMSSP / GSS-API / Kerberos dissectors, so
-- ntlmssp.auth.username and kerberos.SNameString work inside SIP too.
--
-- Canonical file: dissectors/lync.lua in the lyncpcap repository (see dissectors/README.md).
-- Install with `lyncpcap wireshark install`, or run `tshark -X lua_script:lync.lua -r CAPTURE`.

local PLUGIN_VERSION = "0.1.0"

-- Plugins and -X lua_script files share one Lua state: when a copy is already loaded (say the
-- installed one, and this file again through -X lua_script), keep that one rather than fail.
if rawget(_G, "LYNCPCAP_LYNC_LUA") then
    io.stderr:write(string.format("lync.lua: %s not loaded, lync.lua %s from %s is already active\n",
        debug.getinfo(1, "S").source, rawget(_G, "LYNCPCAP_LYNC_LUA").version, rawget(_G, "LYNCPCAP_LYNC_LUA").source))
    return
end
rawset(_G, "LYNCPCAP_LYNC_LUA", { version = PLUGIN_VERSION, source = debug.getinfo(1, "S").source })

if set_plugin_info then
    set_plugin_info({
        version = PLUGIN_VERSION,
        description = "Lync 2013 / Skype for Business sign-in steps (lyncpcap)",
        repository = "dissectors/lync.lua in the lyncpcap repository",
    })
end

-- BEGIN GENERATED TABLES
-- Rendered by lyncpcap.wireshark.render_tables() from lyncpcap/steps/{rules,dns,kdc}.py,
-- lyncpcap/protocols/{kerberos,adfs,oauth}.py and lyncpcap/data/clients.json. Do not edit by hand:
-- run `python -m lyncpcap.wireshark` after changing those (tests/test_wireshark_plugin.py checks).
local URL_RULES = {
  {step = "mex", kind = "webticket-mex", lync = true, ci = true, patterns = {"^/webticket/webticketservice%.svc/mex[/%?]", "^/webticket/webticketservice%.svc/mex$"}},
  {step = "certprov", kind = "certprov-mex", lync = true, ci = true, patterns = {"^/certprov/certprovisioningservice%.svc/mex[/%?]", "^/certprov/certprovisioningservice%.svc/mex$"}},
  {step = "webticket", kind = "webticket", lync = true, ci = true, patterns = {"^/webticket/webticketservice%.svc/[^%?]*%?", "^/webticket/webticketservice%.svc/[^%?]*$", "^/webticket/webticketservice%.svc%?", "^/webticket/webticketservice%.svc$"}},
  {step = "oauth", kind = "oauthtoken", lync = true, ci = true, patterns = {"^/webticket/oauthtoken[/%?]", "^/webticket/oauthtoken$"}},
  {step = "webticket", kind = "o365-rst2", lync = true, ci = true, patterns = {"^/rst2%.srf[%?]", "^/rst2%.srf$"}},
  {step = "certprov", kind = "certprov", lync = true, ci = true, patterns = {"^/certprov/certprovisioningservice%.svc"}},
  {step = "autodiscover", kind = "oauth-user", lync = true, ci = true, patterns = {"^/autodiscover/autodiscoverservice%.svc/root/oauth/user"}},
  {step = "autodiscover", kind = "user", lync = true, ci = true, patterns = {"^/autodiscover/autodiscoverservice%.svc/root/user"}},
  {step = "autodiscover", kind = "domain", lync = true, ci = true, patterns = {"^/autodiscover/autodiscoverservice%.svc/root/domain"}},
  {step = "autodiscover", kind = "root", lync = true, ci = true, patterns = {"^/autodiscover/autodiscoverservice%.svc/root[/%?]", "^/autodiscover/autodiscoverservice%.svc/root$"}},
  {step = "adfs", kind = "lync-passiveauth", lync = true, ci = true, patterns = {"^/passiveauth[/%?%.]", "^/passiveauth$"}},
  {step = "adfs", kind = "adfs-ls", lync = true, ci = true, patterns = {"^/adfs/ls[/%?]", "^/adfs/ls$"}},
  {step = "ucwa", kind = "applications", lync = true, ci = true, patterns = {"^/ucwa/oauth/v1/applications/?%?", "^/ucwa/oauth/v1/applications/?$", "^/ucwa/anonymous/v1/applications/?%?", "^/ucwa/anonymous/v1/applications/?$", "^/ucwa/v1/applications/?%?", "^/ucwa/v1/applications/?$"}},
  {step = "autodiscover", kind = "root", lync = true, ci = true, patterns = {"^/autodiscover/autodiscoverservice%.svc[/%?]", "^/autodiscover/autodiscoverservice%.svc$"}},
  {step = "autodiscover", kind = "xframe", lync = true, ci = true, patterns = {"^/autodiscover/xframe/"}},
  {step = "adfs", kind = "adfs", lync = true, ci = true, patterns = {"^/adfs/oauth2", "^/adfs/services/trust", "^/adfs/federationmetadata", "^/adfs/portal"}},
  {step = "ucwa", kind = "resource", lync = true, ci = true, patterns = {"^/ucwa/"}},
  {step = "other", kind = "o365-realm", lync = true, ci = true, patterns = {"^/getuserrealm%.srf[%?]", "^/getuserrealm%.srf$"}},
  {step = "other", kind = "lwa-meet", lync = true, ci = true, patterns = {"^/meet/"}},
  {step = "other", kind = "lwa", lync = true, ci = true, patterns = {"^/lwa/"}},
  {step = "other", kind = "authbroker", lync = true, ci = true, patterns = {"^/reach/"}},
  {step = "other", kind = "mcx", lync = true, ci = true, patterns = {"^/mcx/"}},
  {step = "other", kind = "abs", lync = true, ci = true, patterns = {"^/abs/"}},
  {step = "other", kind = "groupexpansion", lync = true, ci = true, patterns = {"^/groupexpansion/"}},
  {step = "other", kind = "scheduler", lync = true, ci = true, patterns = {"^/scheduler"}},
  {step = "other", kind = "dialin", lync = true, ci = true, patterns = {"^/dialin"}},
  {step = "other", kind = "lync-web", lync = true, ci = true, patterns = {"^/rgsclients", "^/locationinformation", "^/persistentchat", "^/hybridconfig", "^/datacollabweb", "^/collabcontent", "^/conferencing", "^/webticket", "^/cscp", "^/etc/place"}},
}
local DISCOVER_HOST = {ci = true, patterns = {"^lyncdiscoverinternal%.", "^lyncdiscover%."}}
local ROOT_ON_DISCOVER_HOST = {step = "autodiscover", kind = "root", lync = true}
local SIMPLE_URL_HOSTS = {
  {host = {ci = true, patterns = {"^meet%."}}, rule = {step = "other", kind = "lwa-meet", lync = true, ci = false, patterns = {"^/[^/%?#]+/[^/%?#]+"}}},
  {host = {ci = true, patterns = {"^dialin%."}}, rule = {step = "other", kind = "dialin", lync = true, ci = false, patterns = {".*"}}},
}
local LYNC_DNS_NAME = {ci = true, patterns = {"^lyncdiscoverinternal%.", "^lyncdiscover%.", "^_sipinternaltls%._tcp%.", "^_sipinternal%._tcp%.", "^_sip%._tls%.", "^_sip%._tcp%.", "^_sipfederationtls%._tcp%.", "^sipinternal%.", "^sipexternal%.", "^sip%.", "^ucupdates%-r2%.", "^_ntp%._udp%."}}
local CLIENTS = {
  {kind = "Lync 2013 Android", family = "mobile", ci = false, patterns = {"RTCC/[%d%.]+ UCWA/[%d%.]+ AndroidLync"}},
  {kind = "Lync 2013 iOS", family = "mobile", ci = false, patterns = {"RTCC/[%d%.]+ UCWA/[%d%.]+ iPhoneLync", "RTCC/[%d%.]+ UCWA/[%d%.]+ iPadLync"}},
  {kind = "Lync 2013 Windows Phone", family = "mobile", ci = false, patterns = {"RTCC/[%d%.]+ UCWA/[%d%.]+ WPLync"}},
  {kind = "UCWA application", family = "web", ci = false, patterns = {"RTCC/[%d%.]+ UCWA/"}},
  {kind = "Lync 2010 Mobile (MCX)", family = "mobile", ci = false, patterns = {"RTCC/[%d%.]+ MCXService"}},
  {kind = "Lync server (AV MCU)", family = "server", ci = false, patterns = {"RTCC/[%d%.]+ AV%-MCU"}},
  {kind = "Skype for Business 2016 desktop", family = "desktop", ci = false, patterns = {"OC/16%."}},
  {kind = "Skype for Business 2015 desktop", family = "desktop", ci = true, patterns = {"oc/15%.[^ ]* %(skype for business%)"}},
  {kind = "Lync 2013 desktop", family = "desktop", ci = false, patterns = {"OC/15%."}},
  {kind = "Lync 2010 desktop", family = "desktop", ci = false, patterns = {"OC/4%.", "Microsoft Lync 2010%)"}},
  {kind = "Office Communicator 2007 R2", family = "desktop", ci = false, patterns = {"OC/3%.5", "Office Communicator 2007 R2"}},
  {kind = "Office Communicator 2007", family = "desktop", ci = false, patterns = {"UCCP/2%.", "%(Microsoft Office Communicator%)"}},
  {kind = "Lync Phone Edition", family = "phone", ci = false, patterns = {"OCPhone/", "CPE/"}},
  {kind = "Lync for Mac 2011", family = "desktop", ci = false, patterns = {"Microsoft Lync for Mac", "Lync for Mac", "LyncForMac"}},
  {kind = "Skype for Business for Mac", family = "desktop", ci = false, patterns = {"Skype for Business for Mac", "SfBMac"}},
  {kind = "Communicator for Mac", family = "desktop", ci = false, patterns = {"Microsoft Communicator for Mac"}},
  {kind = "Lync 2013 Windows Phone", family = "mobile", ci = true, patterns = {"wplync", "windows phone.*lync", "lync.*windows phone", "lync/[%d%.]+ %(windows phone"}},
  {kind = "Lync 2013 Android", family = "mobile", ci = true, patterns = {"androidlync", "acomo", "lync.*android", "skype for business.*android"}},
  {kind = "Lync 2013 iOS", family = "mobile", ci = true, patterns = {"iphonelync", "ipadlync", "lync/[%d%.]+ .*cfnetwork", "lync/[%d%.]+ .*darwin", "skype for business.*iphone", "skype for business.*ipad", "skype for business.*ios"}},
  {kind = "Lync 2013 iOS", family = "mobile", ci = true, patterns = {"cfnetwork/[%d%.]+ darwin/"}},
  {kind = "Skype for Business desktop", family = "desktop", ci = true, patterns = {"%(skype for business%)"}},
  {kind = "Lync 2010 Nokia", family = "mobile", ci = true, patterns = {"nokialync"}},
  {kind = "Lync desktop (BITS download)", family = "desktop", ci = true, patterns = {"microsoft bits"}},
  {kind = "Script (Python)", family = "tool", ci = true, patterns = {"python%-requests", "python%-urllib", "aiohttp", "httpx"}},
  {kind = "Script (PowerShell)", family = "tool", ci = true, patterns = {"windowspowershell", "powershell"}},
  {kind = "Script (command-line HTTP)", family = "tool", ci = true, patterns = {"^curl", "^wget", "^go%-http%-client", "^okhttp", "^java/", "^libwww%-perl", "^ruby"}},
}
local BROWSER = {kind = "Web browser", family = "browser", ci = false, patterns = {"^Mozilla/"}}
local LWA_KIND = "Lync Web App"
local KERBEROS_ERRORS = {
  [0] = "KDC_ERR_NONE",
  [1] = "KDC_ERR_NAME_EXP",
  [2] = "KDC_ERR_SERVICE_EXP",
  [3] = "KDC_ERR_BAD_PVNO",
  [4] = "KDC_ERR_C_OLD_MAST_KVNO",
  [5] = "KDC_ERR_S_OLD_MAST_KVNO",
  [6] = "KDC_ERR_C_PRINCIPAL_UNKNOWN",
  [7] = "KDC_ERR_S_PRINCIPAL_UNKNOWN",
  [8] = "KDC_ERR_PRINCIPAL_NOT_UNIQUE",
  [9] = "KDC_ERR_NULL_KEY",
  [10] = "KDC_ERR_CANNOT_POSTDATE",
  [11] = "KDC_ERR_NEVER_VALID",
  [12] = "KDC_ERR_POLICY",
  [13] = "KDC_ERR_BADOPTION",
  [14] = "KDC_ERR_ETYPE_NOSUPP",
  [15] = "KDC_ERR_SUMTYPE_NOSUPP",
  [16] = "KDC_ERR_PADATA_TYPE_NOSUPP",
  [17] = "KDC_ERR_TRTYPE_NOSUPP",
  [18] = "KDC_ERR_CLIENT_REVOKED",
  [19] = "KDC_ERR_SERVICE_REVOKED",
  [20] = "KDC_ERR_TGT_REVOKED",
  [21] = "KDC_ERR_CLIENT_NOTYET",
  [22] = "KDC_ERR_SERVICE_NOTYET",
  [23] = "KDC_ERR_KEY_EXPIRED",
  [24] = "KDC_ERR_PREAUTH_FAILED",
  [25] = "KDC_ERR_PREAUTH_REQUIRED",
  [26] = "KDC_ERR_SERVER_NOMATCH",
  [27] = "KDC_ERR_MUST_USE_USER2USER",
  [28] = "KDC_ERR_PATH_NOT_ACCEPTED",
  [29] = "KDC_ERR_SVC_UNAVAILABLE",
  [31] = "KRB_AP_ERR_BAD_INTEGRITY",
  [32] = "KRB_AP_ERR_TKT_EXPIRED",
  [33] = "KRB_AP_ERR_TKT_NYV",
  [34] = "KRB_AP_ERR_REPEAT",
  [35] = "KRB_AP_ERR_NOT_US",
  [36] = "KRB_AP_ERR_BADMATCH",
  [37] = "KRB_AP_ERR_SKEW",
  [38] = "KRB_AP_ERR_BADADDR",
  [39] = "KRB_AP_ERR_BADVERSION",
  [40] = "KRB_AP_ERR_MSG_TYPE",
  [41] = "KRB_AP_ERR_MODIFIED",
  [42] = "KRB_AP_ERR_BADORDER",
  [44] = "KRB_AP_ERR_BADKEYVER",
  [45] = "KRB_AP_ERR_NOKEY",
  [46] = "KRB_AP_ERR_MUT_FAIL",
  [47] = "KRB_AP_ERR_BADDIRECTION",
  [48] = "KRB_AP_ERR_METHOD",
  [49] = "KRB_AP_ERR_BADSEQ",
  [50] = "KRB_AP_ERR_INAPP_CKSUM",
  [51] = "KRB_AP_PATH_NOT_ACCEPTED",
  [52] = "KRB_ERR_RESPONSE_TOO_BIG",
  [60] = "KRB_ERR_GENERIC",
  [61] = "KRB_ERR_FIELD_TOOLONG",
  [62] = "KDC_ERROR_CLIENT_NOT_TRUSTED",
  [63] = "KDC_ERROR_KDC_NOT_TRUSTED",
  [64] = "KDC_ERROR_INVALID_SIG",
  [65] = "KDC_ERR_KEY_TOO_WEAK",
  [66] = "KDC_ERR_CERTIFICATE_MISMATCH",
  [67] = "KRB_AP_ERR_NO_TGT",
  [68] = "KDC_ERR_WRONG_REALM",
  [69] = "KRB_AP_ERR_USER_TO_USER_REQUIRED",
  [70] = "KDC_ERR_CANT_VERIFY_CERTIFICATE",
  [71] = "KDC_ERR_INVALID_CERTIFICATE",
  [72] = "KDC_ERR_REVOKED_CERTIFICATE",
  [73] = "KDC_ERR_REVOCATION_STATUS_UNKNOWN",
  [74] = "KDC_ERR_REVOCATION_STATUS_UNAVAILABLE",
  [75] = "KDC_ERR_CLIENT_NAME_MISMATCH",
  [76] = "KDC_ERR_KDC_NAME_MISMATCH",
  [77] = "KDC_ERR_INCONSISTENT_KEY_PURPOSE",
  [78] = "KDC_ERR_DIGEST_IN_CERT_NOT_ACCEPTED",
  [79] = "KDC_ERR_PA_CHECKSUM_MUST_BE_INCLUDED",
  [80] = "KDC_ERR_DIGEST_IN_SIGNED_DATA_NOT_ACCEPTED",
  [81] = "KDC_ERR_PUBLIC_KEY_ENCRYPTION_NOT_SUPPORTED",
  [90] = "KDC_ERR_PREAUTH_EXPIRED",
  [91] = "KDC_ERR_MORE_PREAUTH_DATA_REQUIRED",
  [92] = "KDC_ERR_PREAUTH_BAD_AUTHENTICATION_SET",
  [93] = "KDC_ERR_UNKNOWN_CRITICAL_FAST_OPTIONS",
}
local KDC_CHALLENGE_ERRORS = {[25] = true, [52] = true}
local ADFS_PRIMARY_METHODS = {["certificateauthentication"] = true, ["deviceauthentication"] = true, ["formsauthentication"] = true, ["windowsauthentication"] = true}
local ADFS_MFA_MARKERS = {"additionalauthentication", "verification code", "verificationcode", "one-time", "onetimepasscode", "otp", "second factor", "multi-factor"}
local GRANT_PASSWORD = "password"
local GRANT_WINDOWS = "urn:microsoft.rtc:windows"
local GRANT_ANONMEETING = "urn:microsoft.rtc:anonmeeting"
local GRANT_PASSIVE = "urn:microsoft.rtc:passive"
-- END GENERATED TABLES

-- ================================================================================================
-- protocol and fields
-- ================================================================================================
local lync = Proto("lync", "Lync / Skype for Business sign-in")

local F = {
    step = ProtoField.string("lync.step", "Step"),
    kind = ProtoField.string("lync.kind", "Step kind"),
    auth = ProtoField.string("lync.auth", "Authentication"),
    credential = ProtoField.bool("lync.credential", "Complete credentials"),
    result = ProtoField.string("lync.result", "Result"),
    user = ProtoField.string("lync.user", "User"),
    client_kind = ProtoField.string("lync.client_kind", "Client kind"),
    diagnostic = ProtoField.string("lync.diagnostic", "Diagnostic"),
    request_in = ProtoField.framenum("lync.request_in", "Request in frame", base.NONE, frametype.REQUEST),
    response_in = ProtoField.framenum("lync.response_in", "Response in frame", base.NONE, frametype.RESPONSE),
    retransmission_of = ProtoField.framenum("lync.retransmission_of", "Retransmission of frame"),
    gssapi = ProtoField.bytes("lync.gssapi_data", "gssapi-data"),
    gssapi_header = ProtoField.string("lync.gssapi.header", "Header"),
    gssapi_scheme = ProtoField.string("lync.gssapi.scheme", "Scheme"),
    gssapi_mechanism = ProtoField.string("lync.gssapi.mechanism", "Mechanism"),
    tls_dsk_flight = ProtoField.string("lync.tls_dsk.flight", "TLS-DSK flight"),
    tls_dsk_record = ProtoField.string("lync.tls_dsk.record", "TLS record"),
    error = ProtoField.string("lync.error", "Plugin error"),
}
lync.fields = F

local E = {
    failure = ProtoExpert.new("lync.failure.expert", "Sign-in step failed", expert.group.RESPONSE_CODE,
        expert.severity.WARN),
    undecoded = ProtoExpert.new("lync.gssapi.malformed", "gssapi-data is not valid base64",
        expert.group.MALFORMED, expert.severity.WARN),
    error = ProtoExpert.new("lync.error.expert", "The lync plugin could not classify this frame",
        expert.group.MALFORMED, expert.severity.ERROR),
}
lync.experts = E

-- ================================================================================================
-- field extractors (must be created when the script loads)
-- ================================================================================================
local X = {}
for _, name in ipairs({
    "frame.number", "tcp.stream", "http.request.method", "http.request.uri", "http.request.line", "http.response.code",
    "http.response.line", "http.request_in", "http.file_data",
    "sip.Request-Line", "sip.Status-Line", "sip.msg_hdr",
    "dns.flags.response", "dns.qry.name", "dns.id", "dns.flags.rcode", "dns.count.answers",
    "kerberos.msg_type", "kerberos.error_code", "kerberos.CNameString", "kerberos.realm", "kerberos.crealm",
}) do
    X[name] = Field.new(name)
end

local function first(name)
    local fi = X[name]()
    return fi
end

local function all(name)
    return { X[name]() }
end

local function value_of(name)
    local fi = X[name]()
    if fi == nil then return nil end
    return fi.value
end

local function bytes_of(fi)
    -- the field's own bytes (bodies may hold NULs or non-UTF-8 text)
    local ok, raw = pcall(function() return fi.range:raw() end)
    if ok and raw then return raw end
    return tostring(fi.value)
end

-- ================================================================================================
-- small helpers
-- ================================================================================================
local function trim(s)
    return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

local function starts_with(s, prefix)
    return s:sub(1, #prefix) == prefix
end

local function matches(matcher, subject)
    if subject == nil then return false end
    local s = matcher.ci and subject:lower() or subject
    for _, p in ipairs(matcher.patterns) do
        if s:find(p) then return true end
    end
    return false
end

local function le16(s, i)
    local a, b = s:byte(i, i + 1)
    if not b then return nil end
    return a + b * 256
end

local function le32(s, i)
    local a, b, c, d = s:byte(i, i + 3)
    if not d then return nil end
    return a + b * 256 + c * 65536 + d * 16777216
end

local function utf16le(s)
    local out = {}
    for i = 1, #s - 1, 2 do
        local c = s:byte(i) + s:byte(i + 1) * 256
        if c < 0x80 then
            out[#out + 1] = string.char(c)
        elseif c < 0x800 then
            out[#out + 1] = string.char(0xC0 + math.floor(c / 64), 0x80 + c % 64)
        else
            out[#out + 1] = string.char(0xE0 + math.floor(c / 4096), 0x80 + math.floor(c / 64) % 64, 0x80 + c % 64)
        end
    end
    return table.concat(out)
end

local function printable(s)
    return s ~= "" and not s:find("[%c\127]")
end

-- base64 as lyncpcap reads it (steps/common.py b64decode): whitespace ignored, padding added.
local function b64decode(text)
    if text == nil then return nil end
    local t = text:gsub("%s", "")
    if t == "" then return nil end
    t = t:gsub("[^%w%+/=]", "")
    t = t:gsub("=+$", "")
    if #t % 4 == 1 then return nil end
    t = t .. string.rep("=", (4 - #t % 4) % 4)
    local ok, ba = pcall(function() return ByteArray.new(t, true):base64_decode() end)
    if not ok or ba == nil or ba:len() == 0 then return nil end
    return ba:raw()
end

local function url_decode(s)
    s = s:gsub("%+", " ")
    return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- application/x-www-form-urlencoded or a query string; the first value of a name wins
local function parse_form(text)
    local out = {}
    if text == nil then return out end
    for part in text:gmatch("[^&]+") do
        local k, v = part:match("^([^=]*)=(.*)$")
        if k == nil then k, v = part, "" end
        k = url_decode(k)
        if k ~= "" and out[k] == nil then out[k] = url_decode(v) end
    end
    return out
end

-- ================================================================================================
-- headers and authentication values
-- ================================================================================================
local Headers = {}
Headers.__index = Headers

local function new_headers()
    return setmetatable({ items = {} }, Headers)
end

function Headers:add(name, value)
    self.items[#self.items + 1] = { name:lower(), value }
end

function Headers:get(name)
    local l = name:lower()
    for _, it in ipairs(self.items) do
        if it[1] == l then return it[2] end
    end
    return nil
end

function Headers:get_all(name)
    local l, out = name:lower(), {}
    for _, it in ipairs(self.items) do
        if it[1] == l then out[#out + 1] = it[2] end
    end
    return out
end

local function header_line(h, line)
    local name, value = line:match("^([^:]+):(.*)$")
    if name then h:add(trim(name), trim(value)) end
end

local function http_headers(fieldname)
    local h = new_headers()
    for _, fi in ipairs(all(fieldname)) do
        header_line(h, (tostring(fi.value):gsub("[\r\n]+$", "")))
    end
    return h
end

local SIP_COMPACT = { i = "call-id", f = "from", t = "to", v = "via", m = "contact", l = "content-length" }

local function sip_headers(block)
    local h = new_headers()
    local lines = {}
    for line in (block .. "\r\n"):gmatch("(.-)\r?\n") do
        if line:match("^[ \t]") and #lines > 0 then
            lines[#lines] = lines[#lines] .. " " .. trim(line)
        elseif line ~= "" then
            lines[#lines + 1] = line
        end
    end
    for _, line in ipairs(lines) do
        local name, value = line:match("^([^:]+):(.*)$")
        if name then
            name = trim(name)
            name = SIP_COMPACT[name:lower()] or name
            h:add(name, trim(value))
        end
    end
    return h
end

local function unquote(v)
    v = trim(v)
    if #v >= 2 and v:sub(1, 1) == '"' and v:sub(-1) == '"' then
        return (v:sub(2, -2):gsub('\\"', '"'):gsub("\\\\", "\\"))
    end
    return v
end

local function split_params(text)
    local parts, cur, quoted, escape = {}, {}, false, false
    for ch in text:gmatch(".") do
        if escape then
            cur[#cur + 1] = ch
            escape = false
        elseif ch == "\\" and quoted then
            cur[#cur + 1] = ch
            escape = true
        else
            if ch == '"' then quoted = not quoted end
            if ch == "," and not quoted then
                parts[#parts + 1] = table.concat(cur)
                cur = {}
            else
                cur[#cur + 1] = ch
            end
        end
    end
    if #cur > 0 then parts[#parts + 1] = table.concat(cur) end
    local out = {}
    for _, p in ipairs(parts) do
        p = trim(p)
        if p ~= "" then out[#out + 1] = p end
    end
    return out
end

-- `Scheme token68` or `Scheme name=value, …` (protocols/httpauth.py)
local function parse_auth(value)
    value = trim(value)
    local sp = value:find(" ", 1, true)
    local scheme = sp and value:sub(1, sp - 1) or value
    local rest = sp and trim(value:sub(sp + 1)) or ""
    local av = { scheme = scheme, lscheme = scheme:lower(), params = {} }
    if rest == "" then return av end
    if not rest:find(",", 1, true) and not rest:find('"', 1, true) then
        local stripped = rest:gsub("=+$", "")
        local lrest = rest:lower()
        if not stripped:find("=", 1, true) or starts_with(lrest, "cwt=") or starts_with(lrest, "opaque=") then
            av.token = rest
            return av
        end
    end
    for _, part in ipairs(split_params(rest)) do
        local eq = part:find("=", 1, true)
        if eq then
            av.params[trim(part:sub(1, eq - 1)):lower()] = unquote(part:sub(eq + 1))
        end
    end
    return av
end

local function nonempty(s)
    return s ~= nil and s ~= ""
end

-- ================================================================================================
-- NTLMSSP, SPNEGO and Kerberos tokens: which mechanism really carries the credential
-- ================================================================================================
local NTLMSSP = "NTLMSSP\0"

local function ntlm_message(m)
    if #m < 12 or not starts_with(m, NTLMSSP) then return nil end
    local mtype = le32(m, 9)
    if mtype == nil or mtype < 1 or mtype > 3 then return nil end
    local msg = { type = mtype }
    if mtype ~= 3 then return msg end
    if #m < 52 then return nil end
    local function buffer(off)
        local len, pos = le16(m, off + 1), le32(m, off + 5)
        if len == nil or pos == nil or pos + len > #m then return nil end
        return m:sub(pos + 1, pos + len)
    end
    local lm, nt, domain, user, ws = buffer(12), buffer(20), buffer(28), buffer(36), buffer(44)
    if lm == nil or nt == nil or domain == nil or user == nil or ws == nil then return nil end
    -- the fixed header ends where the first payload starts; flags exist when it reaches 64 bytes
    local header_end = #m
    for _, off in ipairs({ 12, 20, 28, 36, 44 }) do
        if le16(m, off + 1) > 0 then header_end = math.min(header_end, le32(m, off + 5)) end
    end
    local unicode
    if header_end >= 64 and #m >= 64 then
        unicode = le32(m, 61) % 2 == 1 -- NTLMSSP_NEGOTIATE_UNICODE (no bit library: Lua 5.2 to 5.4)
    else
        local sample = user .. domain
        unicode = #sample > 0 and #sample % 2 == 0 and not sample:gsub("(.)(.)", "%2"):find("[^\0]")
    end
    if unicode then
        if #domain % 2 == 1 or #user % 2 == 1 or #ws % 2 == 1 then return nil end
        domain, user = utf16le(domain), utf16le(user)
    end
    msg.domain, msg.user = domain, user
    msg.anonymous = user == "" and #nt == 0 and #lm <= 1
    if user ~= "" then msg.account = domain ~= "" and (domain .. "\\" .. user) or user end
    return msg
end

-- DER: tag, first content index, last content index
local function der(s, pos, limit)
    limit = limit or #s
    local tag, l = s:byte(pos, pos + 1)
    if l == nil or pos + 1 > limit then return nil end
    local start = pos + 2
    if l >= 0x80 then
        local n = l - 0x80
        if n == 0 or n > 4 then return nil end
        l = 0
        for i = 0, n - 1 do
            local b = s:byte(pos + 2 + i)
            if b == nil then return nil end
            l = l * 256 + b
        end
        start = pos + 2 + n
    end
    local stop = start + l - 1
    if stop > limit then return nil end
    return tag, start, stop
end

local function der_children(s, start, stop)
    local out, pos = {}, start
    while pos <= stop do
        local tag, a, b = der(s, pos, stop)
        if tag == nil then return nil end
        out[#out + 1] = { tag = tag, start = a, stop = b }
        pos = b + 1
    end
    return out
end

local OIDS = {
    ["\43\6\1\5\5\2"] = "spnego",
    ["\42\134\72\134\247\18\1\2\2"] = "kerberos",
    ["\42\134\72\130\247\18\1\2\2"] = "kerberos",
    ["\42\134\72\134\247\18\1\2\2\3"] = "kerberos",
    ["\43\6\1\4\1\130\55\2\2\10"] = "ntlm",
}
local KRB_TAGS = { [0x6E] = "ap-req", [0x6F] = "ap-rep", [0x7E] = "krb-error" }
local KRB5_TOK_IDS = { ["\1\0"] = 0x6E, ["\2\0"] = 0x6F, ["\3\0"] = 0x7E }

-- InitialContextToken: the mechanism OID and where the inner token starts
local function initial_context(s)
    local tag, a, b = der(s, 1)
    if tag ~= 0x60 then return nil end
    local otag, oa, ob = der(s, a, b)
    if otag ~= 0x06 then return nil end
    return OIDS[s:sub(oa, ob)] or "other", s:sub(ob + 1, b)
end

local function krb5_inner(rest)
    local expected = KRB5_TOK_IDS[rest:sub(1, 2)]
    if #rest < 2 then return nil end
    if expected == nil then return { mechanism = "kerberos" } end
    if rest:byte(3) ~= expected then return nil end
    return { mechanism = "kerberos", krb = KRB_TAGS[expected] }
end

-- a mechanism token by its own bytes (SPNEGO mechToken / responseToken)
local function mech_token(t)
    if starts_with(t, NTLMSSP) then
        local m = ntlm_message(t)
        if m == nil then return nil end
        return { mechanism = "ntlm", ntlm = m }
    end
    local first_byte = t:byte(1)
    if first_byte == 0x60 then
        local mech, rest = initial_context(t)
        if mech == nil then return nil end
        if mech == "kerberos" then return krb5_inner(rest) end
        if mech == "ntlm" and starts_with(rest, NTLMSSP) then
            local m = ntlm_message(rest)
            if m == nil then return nil end
            return { mechanism = "ntlm", ntlm = m }
        end
        return { mechanism = "unknown" }
    end
    if first_byte and KRB_TAGS[first_byte] then
        return { mechanism = "kerberos", krb = KRB_TAGS[first_byte] }
    end
    return { mechanism = "unknown" }
end

local function negotiation_token(s)
    local tag, a, b = der(s, 1)
    if tag ~= 0xA0 and tag ~= 0xA1 then return nil end
    local stag, sa, sb = der(s, a, b)
    if stag ~= 0x30 then return nil end
    local fields = der_children(s, sa, sb)
    if fields == nil then return nil end
    local by = {}
    for _, f in ipairs(fields) do by[f.tag] = f end
    if tag == 0xA0 then
        local mech_types = {}
        if by[0xA0] then
            local _, la, lb = der(s, by[0xA0].start, by[0xA0].stop)
            for _, oid in ipairs(der_children(s, la, lb) or {}) do
                mech_types[#mech_types + 1] = OIDS[s:sub(oid.start, oid.stop)] or "other"
            end
        end
        local inner = { mechanism = "unknown" }
        if by[0xA2] then
            local otag, oa, ob = der(s, by[0xA2].start, by[0xA2].stop)
            if otag ~= 0x04 then return nil end
            inner = mech_token(s:sub(oa, ob))
            if inner == nil then return nil end
            if inner.mechanism == "unknown" and mech_types[1] then
                local m = mech_types[1]
                inner = { mechanism = (m == "kerberos" or m == "ntlm") and m or "unknown" }
            end
        end
        return inner
    end
    local inner = { mechanism = "unknown" }
    if by[0xA1] then
        local otag, oa, ob = der(s, by[0xA1].start, by[0xA1].stop)
        local m = otag == 0x06 and OIDS[s:sub(oa, ob)] or nil
        inner = { mechanism = (m == "kerberos" or m == "ntlm") and m or "unknown" }
    end
    if by[0xA2] then
        local otag, oa, ob = der(s, by[0xA2].start, by[0xA2].stop)
        if otag ~= 0x04 then return nil end
        local found = mech_token(s:sub(oa, ob))
        if found == nil then return nil end
        if found.mechanism ~= "unknown" then inner = found end
    end
    return inner
end

-- steps/common.py decode_token: nil when absent or unreadable
local function decode_token(raw)
    if raw == nil or raw == "" then return nil end
    local tok
    if starts_with(raw, NTLMSSP) then
        tok = mech_token(raw)
    else
        local first_byte = raw:byte(1)
        if first_byte == 0x60 then
            local mech, rest = initial_context(raw)
            if mech == "spnego" then
                tok = negotiation_token(rest)
            elseif mech == "kerberos" then
                tok = krb5_inner(rest)
            elseif mech == "ntlm" then
                tok = starts_with(rest, NTLMSSP) and mech_token(rest) or nil
            end
        elseif first_byte == 0xA0 or first_byte == 0xA1 then
            tok = negotiation_token(raw)
        elseif KRB_TAGS[first_byte] then
            tok = { mechanism = "kerberos", krb = KRB_TAGS[first_byte] }
        end
    end
    if tok == nil then return nil end
    tok.complete = (tok.ntlm ~= nil and tok.ntlm.type == 3) or tok.krb == "ap-req"
    return tok
end

-- ================================================================================================
-- XML and JSON bodies, read the way lyncpcap's protocol modules read them (by local names)
-- ================================================================================================
local function xml_text(body)
    if body == nil then return nil end
    local s = body:gsub("^\239\187\191", ""):gsub("^%s+", "")
    if s:sub(1, 1) ~= "<" then return nil end
    return s
end

local function find_element(x, name, init)
    init = init or 1
    local best
    for _, p in ipairs({ "<" .. name .. "[%s/>]", "<[%w_%.%-]+:" .. name .. "[%s/>]" }) do
        local a = x:find(p, init)
        if a and (best == nil or a < best) then best = a end
    end
    return best
end

local function entities(s)
    return (s:gsub("&lt;", "<"):gsub("&gt;", ">"):gsub("&quot;", '"'):gsub("&apos;", "'"):gsub("&amp;", "&"))
end

-- the element (open tag, inner text with tags) of the first element with this local name
local function element(x, name, init)
    local a = find_element(x, name, init)
    if a == nil then return nil end
    local gt = x:find(">", a, true)
    if gt == nil then return nil end
    local open = x:sub(a, gt)
    if open:sub(-2) == "/>" then return { open = open, inner = "", stop = gt } end
    local prefix = open:match("^<([%w_%.%-]+):") 
    local close = "</" .. (prefix and (prefix .. ":") or "") .. name .. ">"
    local c = x:find(close, gt + 1, true)
    if c == nil then return { open = open, inner = x:sub(gt + 1), stop = #x } end
    return { open = open, inner = x:sub(gt + 1, c - 1), stop = c + #close - 1 }
end

local function element_text(x, name, init)
    local el = element(x, name, init)
    if el == nil then return nil end
    return trim(entities((el.inner:gsub("<!%[CDATA%[(.-)%]%]>", "%1"):gsub("<[^>]*>", ""))))
end

local function attribute(open, name)
    for _, p in ipairs({ "[%s:]" .. name .. '%s*=%s*"([^"]*)"', "[%s:]" .. name .. "%s*=%s*'([^']*)'" }) do
        local v = open:match(p)
        if v then return entities(v) end
    end
    return nil
end

local function maybe_b64(text)
    local t = trim(text)
    if t == "" or #t % 4 ~= 0 or t:find("%s") or not t:match("^[%w%+/]+=*$") then return t end
    local raw = b64decode(t)
    if raw == nil then return t end
    if printable(raw) then return raw end
    if #raw % 2 == 0 then
        local u = utf16le(raw)
        if printable(u) then return u end
    end
    return t
end

-- protocols/wstrust.py: a SOAP fault, a token response or a token request
local function wstrust(body)
    local x = xml_text(body)
    if x == nil then return nil end
    local f = find_element(x, "Fault")
    if f then
        local err = element_text(x, "ErrorId", f)
        local error_id = err and tonumber(err) or nil
        local code = element_text(x, "faultcode", f)
        if not nonempty(code) then code = element_text(x, "Value", f) end
        local str = element_text(x, "faultstring", f)
        if not nonempty(str) then str = element_text(x, "Text", f) end
        local reason = error_id and element_text(x, "Reason", f) or nil
        local parts = {}
        if nonempty(code) then parts[#parts + 1] = code end
        if error_id then parts[#parts + 1] = "ErrorId " .. error_id end
        local why = nonempty(reason) and reason or str
        if nonempty(why) then parts[#parts + 1] = '"' .. why .. '"' end
        return { what = "fault", diagnostic = table.concat(parts, " ") }
    end
    if find_element(x, "RequestSecurityTokenResponse") then
        return { what = "response", subject = element_text(x, "NameIdentifier") }
    end
    local rst = find_element(x, "RequestSecurityToken")
    if rst == nil then return nil end
    local msg = { what = "request" }
    local claims = element(x, "Claims")
    if claims then
        local pos = 1
        while true do
            local ct = element(claims.inner, "ClaimType", pos)
            if ct == nil then break end
            local uri = (attribute(ct.open, "Uri") or ""):lower()
            local val = element_text(ct.inner, "Value")
            if nonempty(val) and not val:lower():find("opaque=app:conf:", 1, true)
                and uri:sub(-13) ~= "conferenceuri"
                and (uri == "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/uri"
                    or (uri == "" and starts_with(val:lower(), "sip:"))) then
                msg.sip_uri = msg.sip_uri or val
            end
            pos = ct.stop + 1
        end
    end
    local header = element(x, "Header")
    if header then
        local h = header.inner
        local ut = element(h, "UsernameToken")
        if ut then
            local u = element_text(ut.inner, "Username")
            if nonempty(u) then msg.username = maybe_b64(u) end
            local p = element_text(ut.inner, "Password")
            if nonempty(p) then msg.password = true end
        end
        local pos = 1
        while true do
            local bst = element(h, "BinarySecurityToken", pos)
            if bst == nil then break end
            if (attribute(bst.open, "ValueType") or ""):lower():find("x509", 1, true) then msg.x509 = true end
            pos = bst.stop + 1
        end
    end
    return msg
end

-- protocols/autodiscover.py: which resource, and whether it redirects
local function autodiscover(body)
    if body == nil then return nil end
    local s = body:gsub("^\239\187\191", ""):gsub("^%s+", "")
    if s:sub(1, 1) == "{" then
        local links = {}
        local l = s:find('"_links"%s*:%s*{')
        if l then
            for name in s:sub(l):gmatch('"([%w_%-]+)"%s*:%s*{%s*"href"%s*:') do links[name:lower()] = true end
        end
        if links.redirect then return { resource = "redirect", redirect = true } end
        if links.applications then return { resource = "user" } end
        if links.user then return { resource = "root" } end
        return { resource = "unknown" }
    end
    if s:sub(1, 1) ~= "<" then return nil end
    local first_el = s:gsub("^<%?.-%?>%s*", ""):gsub("^<!%-%-.-%-%->%s*", "")
    local root = first_el:match("^<([%w_%.%-:]+)")
    if root == nil or (root:match(":(.+)$") or root) ~= "AutodiscoverResponse" then return nil end
    local links, redirect = 0, false
    for open in s:gmatch("<[%w_%.%-]*:?Link%s[^>]*>") do
        local token = attribute(open, "token")
        if nonempty(token) then
            links = links + 1
            if token:lower() == "redirect" then redirect = true end
        end
    end
    if redirect and links == 1 then return { resource = "redirect", redirect = true } end
    if find_element(s, "User") then return { resource = "user", redirect = redirect } end
    if find_element(s, "Root") then return { resource = "root", redirect = redirect } end
    return { resource = "unknown", redirect = redirect }
end

-- protocols/oauth.py token response
local function oauth_response(body)
    if body == nil or not trim(body):match("^{") then return nil end
    local token = body:match('"access_token"%s*:%s*"([^"]*)"')
    local err = body:match('"error"%s*:%s*"([^"]*)"')
    local passive = body:match('"ms_rtc_passiveauthuri"%s*:%s*"([^"]*)"')
    return { access_token = nonempty(token), error = err, passive = passive ~= nil }
end

-- protocols/certprov.py answer
local function certprov_response(body)
    local x = xml_text(body)
    if x == nil then return nil end
    local resp = element(x, "GetAndPublishCertResponse")
    if resp == nil then return nil end
    local err = element(resp.inner, "ErrorInfo")
    local error_text
    if err then
        error_text = element_text(resp.inner, "ErrorInfo")
        error_text = (error_text or ""):gsub("%s+", " ")
        if error_text == "" then error_text = "ErrorInfo" end
    end
    local issued = false
    local pos = 1
    while true do
        local bst = element(resp.inner, "BinarySecurityToken", pos)
        if bst == nil then break end
        if trim((bst.inner:gsub("<[^>]*>", ""))) ~= "" then issued = true end
        pos = bst.stop + 1
    end
    return { issued = issued and error_text == nil, error = error_text }
end

-- protocols/adfs.py sign-in page
local function adfs_page(body)
    local low = (body or ""):lower()
    local page = {}
    local _, _, a, b = low:find("<[^>]*id%s*=%s*[\"']errortext[\"'][^>]*>()(.-)</")
    if a then
        local text = trim((body:sub(a, a + #b - 1):gsub("<[^>]+>", ""))):gsub("%s+", " ")
        if text ~= "" then page.error_text = text end
    end
    page.login = low:find('type="password"', 1, true) or low:find("type='password'", 1, true)
        or low:find('name="password"', 1, true)
    page.token_form = low:find('name="wresult"', 1, true) or low:find("name='wresult'", 1, true)
    local mfa = false
    for _, m in ipairs(ADFS_MFA_MARKERS) do
        if low:find(m, 1, true) then mfa = true end
    end
    page.mfa = mfa and not page.token_form
    page.error_page = low:find("an error occurred", 1, true) and not page.login
    return page
end

-- the form fields protocols/adfs.py parse_request reads as a one-time code
local ADFS_OTP_FIELDS = { otp = true, verificationcode = true, challengequestionanswer = true, pin = true }

-- ================================================================================================
-- state: one record per frame of a sign-in step, built on the first pass and shown on every pass
-- ================================================================================================
local S

local function reset_state()
    S = {
        seen = {},        -- frame number -> true once classified with its fields in hand
        frames = {},      -- frame number -> record
        attempts = {},    -- open authentication attempt per HTTP connection / SIP dialog
        clients = {},     -- client address -> client kind evidence
        sip_pending = {}, -- Call-ID|CSeq|method -> request record
        dns_pending = {}, -- addresses|ports|id -> request record
        kdc_pending = {}, -- client|connection|server -> queue of request records
    }
end
reset_state()

function lync.init()
    reset_state()
end

-- steps/common.py Attempt: the identity a later step of the same handshake shows (the NTLM
-- AUTHENTICATE after the NEGOTIATE, the SIP From of the REGISTER that succeeds) reaches the earlier
-- steps that lack it. Identities never flow forward. The attempt ends with a success or a failure.
local function attempt_add(key, rec)
    local a = S.attempts[key]
    if a == nil then
        a = {}
        S.attempts[key] = a
    end
    if not rec.in_attempt then
        a[#a + 1] = rec
        rec.in_attempt = true
    end
    for _, earlier in ipairs(a) do
        if earlier == rec then break end
        earlier.account = earlier.account or rec.account
        earlier.sip_uri = earlier.sip_uri or rec.sip_uri
    end
    if rec.outcome == "success" or rec.outcome == "failure" then S.attempts[key] = nil end
end

-- client kinds ranked as sessions.py ranks them: SIP UA, HTTP UA, application UA, tool, browser,
-- unknown; a browser that loads Lync Web App pages or UCWA through XFrame is Lync Web App
local function client_match(ua)
    for _, c in ipairs(CLIENTS) do
        if matches(c, ua) then return c end
    end
    if matches(BROWSER, ua) then return BROWSER end
    return nil
end

local function client_state(addr)
    local c = S.clients[addr]
    if c == nil then
        c = {}
        S.clients[addr] = c
    end
    return c
end

local function note_user_agent(addr, ua, source)
    if not nonempty(ua) or addr == nil then return end
    local c = client_state(addr)
    local m = client_match(ua)
    local rank, kind
    if m == nil then
        rank, kind = 5, "unknown"
    elseif m.family == "browser" then
        rank, kind = 4, m.kind
    elseif m.family == "tool" then
        rank, kind = 3, m.kind
    elseif source == "sip" then
        rank, kind = 0, m.kind
    elseif source == "http" then
        rank, kind = 1, m.kind
    else -- the UserAgent a UCWA application declares
        rank, kind = 2, m.kind
    end
    if c.rank == nil or rank < c.rank then
        c.rank, c.kind = rank, kind
    end
end

local function client_kind(addr)
    local c = addr and S.clients[addr]
    if c == nil or c.rank == nil then return "unknown" end
    if c.rank == 4 and c.lwa then return LWA_KIND end
    if c.rank == 5 then return "unknown" end
    return c.kind
end

local function note_account(rec, account)
    if nonempty(account) then rec.account = rec.account or account end
end

local function note_sip_uri(rec, uri)
    if nonempty(uri) then rec.sip_uri = rec.sip_uri or uri end
end

local function user_of(rec)
    return rec.account or rec.sip_uri
end

-- ================================================================================================
-- HTTP (steps/http.py)
-- ================================================================================================
local function match_rule(host, path)
    for _, r in ipairs(URL_RULES) do
        if matches(r, path) then return r end
    end
    local name = host and host:gsub(":.*$", "")
    if name and matches(DISCOVER_HOST, name) then return ROOT_ON_DISCOVER_HOST end
    if name then
        for _, s in ipairs(SIMPLE_URL_HOSTS) do
            if matches(s.host, name) and matches(s.rule, path) then return s.rule end
        end
    end
    return nil
end

local function first_forwarded(value)
    if not nonempty(value) then return nil end
    local f = trim(value:match("^[^,]*"))
    if f:sub(1, 1) == "[" and f:find("]", 1, true) then return f:sub(2, f:find("]", 1, true) - 1) end
    local _, colons = f:gsub(":", "")
    if colons == 1 then f = f:match("^[^:]*") end
    return f ~= "" and f or nil
end

local function http_request_auth(rec, h)
    if h:get("X-MS-WebTicket") then rec.ticket = true end
    if (h:get("Cookie") or ""):find("FedAuth", 1, true) then rec.fedauth = true end
    local value = h:get("Authorization")
    if value == nil then return end
    local av = parse_auth(value)
    local scheme = av.lscheme
    if scheme == "bearer" then
        rec.ticket = true
        return
    end
    if scheme == "basic" then
        rec.auth, rec.credential = "password", true
        local raw = b64decode(av.token or "")
        if raw and raw:find(":", 1, true) then rec.account = raw:match("^([^:]*)") end
        return
    end
    if scheme == "digest" then
        rec.auth, rec.credential = "digest", av.params.response ~= nil
        if nonempty(av.params.username) then rec.account = av.params.username end
        return
    end
    if scheme ~= "ntlm" and scheme ~= "negotiate" and scheme ~= "kerberos" then return end
    local tok = av.token and decode_token(b64decode(av.token)) or nil
    if tok == nil then
        rec.auth = scheme == "ntlm" and "ntlm" or "unknown"
        return
    end
    rec.auth = (tok.mechanism == "ntlm" or tok.mechanism == "kerberos") and tok.mechanism or "unknown"
    if tok.ntlm then
        if tok.ntlm.type == 3 then
            rec.credential = true
            rec.account = tok.ntlm.account
            if tok.ntlm.anonymous then rec.auth = "anonymous" end
        end
    elseif tok.mechanism == "kerberos" then
        rec.credential = tok.complete
    end
end

local function http_step_auth(rec, req_body, query)
    if rec.step == "webticket" then
        local suffix = rec.path:match("^[^?]*"):lower()
        local last
        for pos in suffix:gmatch("()webticketservice%.svc") do last = pos end
        suffix = last and suffix:sub(last + #"webticketservice.svc") or suffix
        while true do
            local inner = suffix:match("^/(.*)$") or suffix:match("^(.*)/$")
            if inner == nil then break end
            suffix = inner
        end
        local msg = wstrust(req_body)
        if msg and msg.what == "request" then
            note_sip_uri(rec, msg.sip_uri)
            if msg.username ~= nil or msg.password then
                rec.auth = "soap"
                rec.credential = msg.password == true
                if nonempty(msg.username) then rec.account = msg.username end
            elseif msg.x509 then
                rec.auth, rec.credential = "certificate", true
            end
        end
        if suffix == "anon" then
            rec.auth, rec.credential = "anonymous", true
        elseif suffix == "cert" and rec.auth == nil then
            rec.auth, rec.credential = "certificate", true
        elseif suffix == "wsfed" or suffix == "wsfedpassive" or suffix == "passive"
            or (rec.fedauth and rec.auth == nil) then
            rec.auth = "passive"
            rec.credential = rec.fedauth or rec.credential
        end
    elseif rec.step == "oauth" then
        local form = parse_form(req_body)
        local g = form.grant_type
        if nonempty(g) then
            if g == GRANT_PASSWORD then
                rec.auth, rec.credential = "password", nonempty(form.password)
                if nonempty(form.username) then rec.account = form.username end
            elseif g == GRANT_ANONMEETING then
                rec.auth, rec.credential = "anonymous", true
            elseif g == GRANT_PASSIVE then
                rec.auth, rec.credential = "passive", rec.fedauth == true
            elseif g == GRANT_WINDOWS then
                -- Integrated Windows auth: the Authorization header (Negotiate/NTLM) has decided
            end
        end
    elseif rec.step == "adfs" then
        local q = parse_form(query)
        local f = rec.method == "POST" and parse_form(req_body) or {}
        local method = f.AuthMethod or q.AuthMethod
        local otp = false
        for k in pairs(f) do
            if ADFS_OTP_FIELDS[k:lower()] then otp = true end
        end
        local wresult = f.wresult or q.wresult
        if rec.auth == nil then rec.auth = "passive" end
        local user = f.UserName or f.username
        if nonempty(user) then rec.account = user end
        if nonempty(f.Password) or nonempty(f.password) then rec.credential = true end
        if (nonempty(method) and not ADFS_PRIMARY_METHODS[method:lower()]) or otp then rec.credential = true end
        if nonempty(wresult) then rec.credential = true end
    elseif rec.step == "certprov" then
        local x = xml_text(req_body)
        local el = x and element(x, "GetAndPublishCert")
        if el then note_sip_uri(rec, attribute(el.open, "Entity")) end
    elseif rec.step == "autodiscover" then
        local sipuri = parse_form(query).sipuri
        if nonempty(sipuri) then
            note_sip_uri(rec, sipuri:lower():find("^sip:") and sipuri or ("sip:" .. sipuri))
        end
    end
end

local function http_request(pinfo)
    local method = value_of("http.request.method")
    local uri = value_of("http.request.uri") or "/"
    local h = http_headers("http.request.line")
    local host = h:get("Host")
    if host == nil and (starts_with(uri, "http://") or starts_with(uri, "https://")) then
        host = uri:match("^https?://([^/]*)")
    end
    local path = uri
    if starts_with(uri, "http://") or starts_with(uri, "https://") then
        path = "/" .. (uri:match("^https?://[^/]*/(.*)$") or "")
    end
    local rule = match_rule(host, path)
    local stream = value_of("tcp.stream")
    local conv = "http:" .. tostring(stream or tostring(pinfo.src) .. ":" .. pinfo.src_port)
    local client = first_forwarded(h:get("X-Forwarded-For")) or tostring(pinfo.src)
    local rec = {
        role = "request", proto = "http", method = method, path = path, conv = conv, client = client,
        step = rule and rule.step or "other", kind = rule and rule.kind or "web",
        lync = rule ~= nil and rule.lync,
    }
    note_user_agent(client, h:get("User-Agent"), "http")
    if h:get("X-Ms-Origin") or h:get("X-Requested-With") == "XMLHttpRequest"
        or rec.kind == "lwa-meet" or rec.kind == "lwa" or rec.kind == "authbroker" then
        client_state(client).lwa = true
    end
    local fd = first("http.file_data")
    local body = fd and bytes_of(fd) or nil
    if rec.kind == "applications" and method == "POST" and body then
        local app_ua = body:match('"[Uu][Ss][Ee][Rr][Aa][Gg][Ee][Nn][Tt]"%s*:%s*"([^"]*)"')
        note_user_agent(client, app_ua, "application")
    end
    http_request_auth(rec, h)
    http_step_auth(rec, body, uri:match("%?(.*)$"))
    attempt_add(conv, rec)
    return rec
end

local function http_result(req, status, h, body)
    local step, result, diag = req.step, "info", h:get("X-Ms-diagnostics") or h:get("X-Ms-diagnostics-public")
    if step == "autodiscover" then
        if status == 401 then
            result = "challenge"
        else
            local info = autodiscover(body)
            if info and not info.redirect and info.resource == "user" and req.ticket and status >= 200
                and status < 300 then
                result = "success"
            end
        end
    elseif step == "webticket" then
        local m = wstrust(body)
        if m and m.what == "response" then
            result = "success"
            note_sip_uri(req, m.subject)
        elseif m and m.what == "fault" then
            result = "failure"
            diag = diag or ("SOAP fault " .. m.diagnostic)
        end
    elseif step == "oauth" then
        local o = oauth_response(body)
        if o and o.access_token then
            result = "success"
        elseif o and o.error then
            result = o.passive and "challenge" or "failure"
            diag = diag or ('{"error":"' .. o.error .. '"}')
        end
    elseif step == "certprov" and req.kind ~= "certprov-mex" then
        local c = certprov_response(body)
        if c and c.issued then
            result = "success"
        elseif c and c.error then
            result = "failure"
            diag = diag or ("ErrorInfo: " .. c.error)
        end
    elseif step == "adfs" then
        if status >= 300 and status < 400 then
            if req.credential then result = "success" end
        elseif status < 400 then
            local page = adfs_page(body)
            if page.error_text and (req.credential or page.error_page) then
                result = "failure"
                diag = diag or ("errorText: " .. page.error_text)
            elseif page.error_page then
                result = "failure"
            elseif page.mfa or page.token_form then
                if req.credential then result = "success" end
            end
        end
    end
    if result ~= "success" and result ~= "failure" and result ~= "challenge" then
        if status == 401 or status == 407 then
            result = req.credential and "failure" or "challenge"
        elseif status >= 200 and status < 400 then
            local ok2xx = status < 300
            if ok2xx and req.credential and (step == "webticket" or step == "oauth" or step == "certprov") then
                result = "success"
            elseif ok2xx and (step == "ucwa" or step == "other") then
                result = "success"
            else
                result = "info"
            end
        else
            result = "failure"
        end
    end
    return result, diag
end

local function http_response(pinfo)
    local req_frame = value_of("http.request_in")
    local status = value_of("http.response.code")
    if req_frame == nil or status == nil then return nil end
    local req = S.frames[req_frame]
    if req == nil or req.proto ~= "http" then return nil end
    local h = http_headers("http.response.line")
    if h:get("X-MS-Server-Fqdn") then req.lync = true end
    local rec = { role = "response", proto = "http", request = req, request_in = req_frame }
    req.response_in = req.response_in or pinfo.number
    if status < 200 then return rec end
    local fd = first("http.file_data")
    local result, diag = http_result(req, status, h, fd and bytes_of(fd) or nil)
    rec.result, rec.diagnostic = result, diag
    req.outcome = result
    attempt_add(req.conv, req)
    return rec
end

-- ================================================================================================
-- SIP (steps/sip.py) and MS-SIPAE gssapi-data
-- ================================================================================================
local SIP_SCHEMES = { ntlm = "ntlm", kerberos = "kerberos", ["tls-dsk"] = "tls-dsk", digest = "digest" }
local AUTH_HEADERS = { "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
    "Authentication-Info" }

local TLS_CONTENT = { [20] = "ChangeCipherSpec", [21] = "Alert", [22] = "Handshake", [23] = "ApplicationData" }
local TLS_HANDSHAKE = { [0] = "HelloRequest", [1] = "ClientHello", [2] = "ServerHello", [11] = "Certificate",
    [12] = "ServerKeyExchange", [13] = "CertificateRequest", [14] = "ServerHelloDone", [15] = "CertificateVerify",
    [16] = "ClientKeyExchange", [20] = "Finished" }

-- which TLS-DSK flight a gssapi-data carries (steps/sip.py tls_dsk_flight) and its records, labelled
local TLS_VERSIONS = { [0x0300] = "SSL 3.0", [0x0301] = "TLS 1.0", [0x0302] = "TLS 1.1", [0x0303] = "TLS 1.2" }

local function tls_dsk(raw)
    local pos, kinds, hs, records, encrypted = 1, {}, {}, {}, false
    while pos + 4 <= #raw do
        local rtype = raw:byte(pos)
        local version = raw:byte(pos + 1) * 256 + raw:byte(pos + 2)
        local length = raw:byte(pos + 3) * 256 + raw:byte(pos + 4)
        kinds[rtype] = true
        local label = string.format("%s (%s, %d bytes)", TLS_CONTENT[rtype] or ("content type " .. rtype),
            TLS_VERSIONS[version] or string.format("version 0x%04x", version), length)
        if rtype == 22 and pos + 5 <= #raw then
            -- the flight test of steps/sip.py looks at the first handshake type of every record
            hs[raw:byte(pos + 5)] = true
            if encrypted then
                label = label .. ": encrypted handshake message (Finished)"
            else
                local names, p, stop = {}, pos + 5, math.min(pos + 4 + length, #raw)
                while p + 3 <= stop do
                    local t = raw:byte(p)
                    names[#names + 1] = TLS_HANDSHAKE[t] or ("handshake type " .. t)
                    p = p + 4 + raw:byte(p + 1) * 65536 + raw:byte(p + 2) * 256 + raw:byte(p + 3)
                end
                label = label .. ": " .. table.concat(names, ", ")
            end
        elseif rtype == 20 then
            encrypted = true
        end
        records[#records + 1] = label
        pos = pos + 5 + length
    end
    local flight = "data"
    if kinds[20] or hs[16] or hs[15] then
        flight = "final"
    elseif hs[1] then
        flight = "hello"
    elseif hs[2] then
        flight = "server"
    end
    return flight, records
end

local function via_client(h)
    local vias = {}
    for _, v in ipairs(h:get_all("Via")) do
        for part in v:gmatch("[^,]+") do
            if trim(part) ~= "" then vias[#vias + 1] = trim(part) end
        end
    end
    if #vias < 2 then return nil end
    local bottom = vias[#vias]
    local received = bottom:match(";%s*[Rr][Ee][Cc][Ee][Ii][Vv][Ee][Dd]%s*=%s*([^;]+)")
    if nonempty(received) then return (trim(received):gsub("^%[", ""):gsub("%]$", "")) end
    local sent_by = trim(bottom:match("^[^;]*")):match("(%S+)$") or ""
    if sent_by:sub(1, 1) == "[" then return sent_by:match("^%[([^%]]*)") end
    local _, colons = sent_by:gsub(":", "")
    if colons == 1 then return sent_by:match("^[^:]*") end
    return sent_by ~= "" and sent_by or nil
end

local function name_addr_uri(value)
    if not nonempty(value) then return nil end
    local uri = value:match("<([^>]+)>") or trim(value:match("^[^;]*"))
    local l = uri:lower()
    if starts_with(l, "sip:") or starts_with(l, "sips:") or starts_with(l, "tel:") then uri = uri:match("^[^;]*") end
    return uri
end

-- Authorization / Proxy-Authorization of a REGISTER (SipClassifier._credential)
local function sip_credential(rec, av)
    local s = av.lscheme
    rec.auth = SIP_SCHEMES[s] or "unknown"
    local p = av.params
    if s == "digest" then
        rec.credential = p.response ~= nil
        if nonempty(p.username) then note_account(rec, p.username) end
        return
    end
    if p.response ~= nil and p.crand ~= nil then
        rec.credential, rec.signed = true, true
        return
    end
    local raw = nonempty(p["gssapi-data"]) and b64decode(p["gssapi-data"]) or nil
    if s == "tls-dsk" then
        rec.credential = raw ~= nil and tls_dsk(raw) == "final"
        return
    end
    local tok = decode_token(raw)
    if tok == nil then return end
    if tok.ntlm then
        if tok.ntlm.type == 3 then
            rec.credential = true
            note_account(rec, tok.ntlm.account)
        end
    elseif tok.mechanism == "kerberos" then
        rec.credential = tok.complete
    end
end

local function sip_message(pinfo, start_line, h, is_request)
    local call_id = h:get("Call-ID") or ""
    local cseq_num, cseq_method = (h:get("CSeq") or ""):match("^%s*(%d+)%s+(%S+)")
    local key = call_id .. "|" .. tostring(cseq_num) .. "|" .. tostring(cseq_method and cseq_method:upper())
    if is_request then
        local method = start_line:match("^(%S+)")
        if method ~= "REGISTER" then return nil end
        local earlier = S.sip_pending[key]
        if earlier then
            return { role = "request", proto = "sip", retransmission_of = earlier.frame, request = earlier }
        end
        local client = via_client(h) or tostring(pinfo.src)
        local conv = "sip:" .. client .. "|" .. call_id
        local rec = { role = "request", proto = "sip", step = "sip-register", lync = true,
            conv = conv, client = client, frame = pinfo.number }
        note_sip_uri(rec, name_addr_uri(h:get("From")))
        note_user_agent(client, h:get("User-Agent"), "sip")
        for _, name in ipairs({ "Authorization", "Proxy-Authorization" }) do
            for _, v in ipairs(h:get_all(name)) do
                if trim(v) ~= "" then sip_credential(rec, parse_auth(v)) end
            end
        end
        S.sip_pending[key] = rec
        return rec
    end
    local status = tonumber(start_line:match("^SIP/%S+%s+(%d+)"))
    local req = S.sip_pending[key]
    if status == nil or req == nil then return nil end
    local rec = { role = "response", proto = "sip", request = req, request_in = req.frame }
    req.response_in = req.response_in or pinfo.number
    if status < 200 then return rec end
    S.sip_pending[key] = nil
    local continuation = false
    for _, name in ipairs({ "WWW-Authenticate", "Proxy-Authenticate" }) do
        for _, v in ipairs(h:get_all(name)) do
            local av = parse_auth(v)
            if nonempty(av.params["gssapi-data"]) or nonempty(av.params.opaque) then continuation = true end
        end
    end
    local diags = h:get_all("ms-diagnostics")
    for _, d in ipairs(h:get_all("ms-diagnostics-public")) do diags[#diags + 1] = d end
    rec.diagnostic = diags[1]
    if status == 200 then
        rec.result = "success"
    elseif status == 401 or status == 407 then
        rec.result = (req.credential and not continuation) and "failure" or "challenge"
    elseif status == 301 or status == 302 then
        rec.result = "info"
    else
        rec.result = "failure"
    end
    req.outcome = rec.result
    attempt_add(req.conv, req)
    return rec
end

-- every gssapi-data of the SIP messages in this frame: {header, scheme, raw bytes or false}
local function sip_gssapi(messages)
    local out = {}
    for _, msg in ipairs(messages) do
        for _, name in ipairs(AUTH_HEADERS) do
            for _, v in ipairs(msg.headers:get_all(name)) do
                local av = parse_auth(v)
                local data = av.params["gssapi-data"]
                if nonempty(data) then
                    out[#out + 1] = { header = name, scheme = av.scheme, raw = b64decode(data) or false }
                end
            end
        end
    end
    return out
end

local function sip_frame(pinfo)
    local blocks = all("sip.msg_hdr")
    if #blocks == 0 then return nil, {} end
    local starts = {}
    for _, fi in ipairs(all("sip.Request-Line")) do starts[#starts + 1] = { fi = fi, request = true } end
    for _, fi in ipairs(all("sip.Status-Line")) do starts[#starts + 1] = { fi = fi, request = false } end
    table.sort(starts, function(a, b) return a.fi.offset < b.fi.offset end)
    local messages = {}
    for i, fi in ipairs(blocks) do
        local st = starts[i]
        if st then
            messages[#messages + 1] = { start = tostring(st.fi.value), request = st.request,
                headers = sip_headers(bytes_of(fi)) }
        end
    end
    local rec
    for _, msg in ipairs(messages) do
        -- one segment may carry several messages (100 Trying and the final answer): the frame
        -- shows the first step, or the final answer that decides it
        local r = sip_message(pinfo, msg.start, msg.headers, msg.request)
        if r and (rec == nil or (r.result and not rec.result)) then rec = r end
    end
    return rec, sip_gssapi(messages)
end

-- ================================================================================================
-- DNS (steps/dns.py) and KDC (steps/kdc.py)
-- ================================================================================================
local function dns_frame(pinfo)
    local qname = value_of("dns.qry.name")
    local is_response = value_of("dns.flags.response")
    local id = value_of("dns.id")
    if qname == nil or id == nil then return nil end
    if not is_response then
        if not matches(LYNC_DNS_NAME, qname) then return nil end
        local key = table.concat({ tostring(pinfo.src), pinfo.src_port, tostring(pinfo.dst), id }, "|")
        local earlier = S.dns_pending[key]
        if earlier then
            return { role = "request", proto = "dns", retransmission_of = earlier.frame, request = earlier }
        end
        local rec = { role = "request", proto = "dns", step = "dns", lync = true,
            client = tostring(pinfo.src), frame = pinfo.number }
        S.dns_pending[key] = rec
        return rec
    end
    local key = table.concat({ tostring(pinfo.dst), pinfo.dst_port, tostring(pinfo.src), id }, "|")
    local req = S.dns_pending[key]
    if req == nil then return nil end
    S.dns_pending[key] = nil
    req.response_in = pinfo.number
    local rcode, answers = value_of("dns.flags.rcode"), value_of("dns.count.answers")
    local ok = rcode == 0 and (answers or 0) > 0
    return { role = "response", proto = "dns", request = req, request_in = req.frame,
        result = ok and "info" or "failure" }
end

local function kdc_frame(pinfo)
    if pinfo.src_port ~= 88 and pinfo.dst_port ~= 88 then return nil end
    local mt = value_of("kerberos.msg_type")
    if mt == nil then return nil end
    local stream = value_of("tcp.stream")
    if mt == 10 or mt == 12 then
        local key = table.concat({ tostring(pinfo.src), stream and ("tcp" .. stream) or pinfo.src_port,
            tostring(pinfo.dst) }, "|")
        local rec = { role = "request", proto = "kdc", step = "kerberos",
            auth = "kerberos", lync = true, client = tostring(pinfo.src), frame = pinfo.number }
        if mt == 10 then
            local cname, realm = value_of("kerberos.CNameString"), value_of("kerberos.realm")
            if nonempty(cname) then rec.account = nonempty(realm) and (cname .. "@" .. realm) or cname end
        end
        local q = S.kdc_pending[key] or {}
        q[#q + 1] = rec
        S.kdc_pending[key] = q
        return rec
    end
    if mt ~= 11 and mt ~= 13 and mt ~= 30 then return nil end
    local key = table.concat({ tostring(pinfo.dst), stream and ("tcp" .. stream) or pinfo.dst_port,
        tostring(pinfo.src) }, "|")
    local q = S.kdc_pending[key]
    if q == nil or #q == 0 then return nil end
    local req = table.remove(q, 1)
    req.response_in = pinfo.number
    local rec = { role = "response", proto = "kdc", request = req, request_in = req.frame }
    if mt == 30 then
        local code = value_of("kerberos.error_code") or 0
        rec.result = KDC_CHALLENGE_ERRORS[code] and "challenge" or "failure"
        rec.diagnostic = string.format("KRB-ERROR %d %s", code, KERBEROS_ERRORS[code] or ("KRB_ERR_" .. math.floor(code)))
    else
        rec.result = "success"
        local cname = value_of("kerberos.CNameString")
        local realm = value_of("kerberos.crealm") or value_of("kerberos.realm")
        if nonempty(cname) then
            rec.account = nonempty(realm) and (cname .. "@" .. realm) or cname
            req.account = req.account or rec.account
        end
    end
    return rec
end

-- ================================================================================================
-- the tree
-- ================================================================================================
local GSS_DISSECTORS = {}
for name, d in pairs({ ntlmssp = "ntlmssp", gssapi = "gssapi", spnego = "spnego", kerberos = "kerberos" }) do
    local ok, dis = pcall(Dissector.get, d)
    if ok then GSS_DISSECTORS[name] = dis end
end

local function show_gssapi(tree, pinfo, g)
    local label = string.format("gssapi-data (%s %s)", g.header, g.scheme)
    if not g.raw then
        local item = tree:add(F.gssapi_header, g.header):set_text(label .. ": not valid base64")
        item:add_proto_expert_info(E.undecoded)
        return
    end
    local ba = ByteArray.new(g.raw, true)
    local gtvb = ba:tvb("gssapi-data")
    local sub = tree:add(F.gssapi, gtvb:range()):set_text(label)
    sub:add(F.gssapi_header, g.header):set_generated()
    sub:add(F.gssapi_scheme, g.scheme):set_generated()
    if g.scheme:lower() == "tls-dsk" then
        local flight, records = tls_dsk(g.raw)
        sub:add(F.tls_dsk_flight, flight):set_generated()
        for _, r in ipairs(records) do sub:add(F.tls_dsk_record, r):set_generated() end
        return
    end
    local first_byte = g.raw:byte(1)
    local which
    if starts_with(g.raw, NTLMSSP) then
        which = "ntlmssp"
    elseif first_byte == 0x60 then
        which = "gssapi"
    elseif first_byte == 0xA0 or first_byte == 0xA1 then
        which = "spnego"
    elseif first_byte and KRB_TAGS[first_byte] then
        which = "kerberos"
    end
    local tok = decode_token(g.raw)
    sub:add(F.gssapi_mechanism, tok and tok.mechanism or "unknown"):set_generated()
    local d = which and GSS_DISSECTORS[which]
    if d then
        pcall(function() d:call(gtvb, pinfo, sub) end)
    end
end

local function describe(rec)
    local req = rec.request or rec
    local parts = { req.step }
    if req.auth then parts[#parts + 1] = req.auth end
    if rec.result then parts[#parts + 1] = rec.result end
    return "Lync sign-in: " .. table.concat(parts, ", ")
end

local function show(rec, tree, tvb, pinfo)
    local req = rec.request or rec
    local t = tree:add(lync, tvb()):set_text(describe(rec))
    t:add(F.step, req.step):set_generated()
    if req.kind then t:add(F.kind, req.kind):set_generated() end
    if req.auth then t:add(F.auth, req.auth):set_generated() end
    if rec.role == "request" then t:add(F.credential, req.credential == true):set_generated() end
    if rec.result then t:add(F.result, rec.result):set_generated() end
    local user = rec.account or user_of(req)
    if user then t:add(F.user, user):set_generated() end
    t:add(F.client_kind, client_kind(req.client)):set_generated()
    if rec.diagnostic then t:add(F.diagnostic, rec.diagnostic):set_generated() end
    if rec.retransmission_of then t:add(F.retransmission_of, rec.retransmission_of):set_generated() end
    if rec.request_in then t:add(F.request_in, rec.request_in):set_generated() end
    if rec.role == "request" and not rec.retransmission_of and req.response_in then
        t:add(F.response_in, req.response_in):set_generated()
    end
    if rec.result == "failure" then
        t:add_proto_expert_info(E.failure, describe(rec) .. (rec.diagnostic and (" (" .. rec.diagnostic .. ")") or ""))
    end
    return t
end

local function sign_in_record(rec)
    if rec == nil then return false end
    local req = rec.request or rec
    return req.lync == true
end

local function classify(pinfo)
    local rec, gss
    if value_of("http.request.method") then
        rec = http_request(pinfo)
    elseif value_of("http.response.code") then
        rec = http_response(pinfo)
    end
    if rec == nil and first("sip.msg_hdr") then
        rec, gss = sip_frame(pinfo)
    end
    if rec == nil and first("dns.qry.name") then
        rec = dns_frame(pinfo)
    end
    if rec == nil and first("kerberos.msg_type") then
        rec = kdc_frame(pinfo)
    end
    if gss and #gss > 0 then
        rec = rec or { role = "gssapi", proto = "sip" }
        rec.gssapi = gss
    end
    return rec
end

function lync.dissector(tvb, pinfo, tree)
    -- Classify each frame once, in the first pass that has field values (Wireshark dissects
    -- without a tree when nothing asks for one; then the extractors, frame.number too, are empty).
    if not S.seen[pinfo.number] and first("frame.number") ~= nil then
        S.seen[pinfo.number] = true
        -- a frame the plugin cannot read is marked, never a reason to stop reading the capture
        local ok, rec = pcall(classify, pinfo)
        if not ok then rec = { role = "error", error = tostring(rec) } end
        if rec then
            rec.frame = rec.frame or pinfo.number
            S.frames[pinfo.number] = rec
        end
    end
    local rec = S.frames[pinfo.number]
    if rec == nil then return end
    local t
    if rec.error then
        t = tree:add(lync, tvb()):set_text("Lync: plugin error")
        t:add(F.error, rec.error):set_generated()
        t:add_proto_expert_info(E.error, "lync.lua: " .. rec.error)
        return
    end
    if sign_in_record(rec) then
        t = show(rec, tree, tvb, pinfo)
    end
    if rec.gssapi then
        t = t or tree:add(lync, tvb()):set_text("Lync: MS-SIPAE gssapi-data")
        for _, g in ipairs(rec.gssapi) do show_gssapi(t, pinfo, g) end
    end
end

register_postdissector(lync)

-- A filtering tap makes Wireshark build the protocol tree on its first pass over a file, so the
-- field extractors above see values then and the per-frame state is built in frame order.
local keep_tree = Listener.new("frame", "http || sip || dns || kerberos")
function keep_tree.packet() end
