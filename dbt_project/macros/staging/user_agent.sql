{#- User-agent parsing with LIKE on a lower-cased user agent (`ua`): identical on every engine, no regex dialects.
    The token lists are the rules; they are unit-tested in _staging__models.yml. Order matters where noted.

    Row-level bot rules live here (ua_bot_reason) and in the staging models (datacenter IP). Rules that need other
    rows (IP bursts, clicks right after a link's creation) live in int_clicks. -#}

{#- like_any(expr, patterns): true when `expr` matches any pattern. Patterns are LIKE-style with '%' as the only
    wildcard ('_' is a literal underscore, as in 'musical_ly'); lower-case literals, no quotes. Dispatched for
    speed, the answer is the same everywhere: a user agent goes through ~70 patterns, and per-pattern LIKE scans
    dominate the cost of staging. DuckDB runs one RE2 alternation (one pass, ~4x faster than the LIKE chain);
    PostgreSQL's regex engine is slow on long alternations, so it gets strpos() (~2x faster than LIKE there). -#}
{% macro like_any(expr, patterns) -%}
    {%- for p in patterns -%}
        {%- if "'" in p or '\\' in p -%}
            {{ exceptions.raise_compiler_error("like_any: quotes and backslashes are not allowed in patterns: " ~ p) }}
        {%- endif -%}
    {%- endfor -%}
    {{- return(adapter.dispatch('like_any', 'link_attribution')(expr, patterns)) -}}
{%- endmacro %}

{% macro default__like_any(expr, patterns) -%}
    ({%- for p in patterns %}{{ " or " if not loop.first }}{{ expr }} like '{{ p | replace('!', '!!') | replace('_', '!_') }}' escape '!'{% endfor -%})
{%- endmacro %}

{% macro duckdb__like_any(expr, patterns) -%}
    {%- set alternatives = [] -%}
    {%- for p in patterns -%}
        {%- set core = namespace(text='') -%}
        {%- for ch in p.strip('%') -%}
            {%- set core.text = core.text ~ ('.*' if ch == '%' else ('[' ~ ch ~ ']' if ch in '.+*?()[]{}|^$' else ch)) -%}
        {%- endfor -%}
        {%- do alternatives.append(('' if p.startswith('%') else '^') ~ core.text ~ ('' if p.endswith('%') else '$')) -%}
    {%- endfor -%}
    regexp_matches({{ expr }}, '{{ alternatives | join("|") }}')
{%- endmacro %}

{% macro postgres__like_any(expr, patterns) -%}
    ({%- for p in patterns %}{{ " or " if not loop.first }}
        {%- set inner = p[1:-1] -%}
        {%- if p.startswith('%') and p.endswith('%') and '%' not in inner and inner -%}
            strpos({{ expr }}, '{{ inner }}') > 0
        {%- elif p.endswith('%') and '%' not in p[:-1] -%}
            left({{ expr }}, {{ p | length - 1 }}) = '{{ p[:-1] }}'
        {%- else -%}
            {{ expr }} like '{{ p | replace('!', '!!') | replace('_', '!_') }}' escape '!'
        {%- endif -%}
    {%- endfor -%})
{%- endmacro %}

{#- Link-preview fetchers: a platform fetching the page to draw a card when the link is posted or shared. -#}
{% macro link_preview_patterns() -%}
    {{ return(['%facebookexternalhit%', '%facebookcatalog%', '%facebot%', '%slackbot%', '%slack-imgproxy%',
               '%twitterbot%', '%linkedinbot%', '%whatsapp%', '%discordbot%', '%telegrambot%',
               '%skypeuripreview%', '%redditbot%', '%embedly%', '%iframely%', '%vkshare%', '%viber%',
               '%mastodon%', '%cardyb%', '%google-pagerenderer%', '%snap url preview%', '%bitlybot%']) }}
{%- endmacro %}

{#- Declared crawlers: search engines, SEO and AI crawlers, and the generic self-identifications. -#}
{% macro declared_crawler_patterns() -%}
    {{ return(['%googlebot%', '%adsbot-google%', '%mediapartners-google%', '%google-inspectiontool%',
               '%bingbot%', '%bingpreview%', '%yandexbot%', '%baiduspider%', '%duckduckbot%', '%applebot%',
               '%slurp%', '%ahrefsbot%', '%semrushbot%', '%mj12bot%', '%dotbot%', '%petalbot%', '%bytespider%',
               '%gptbot%', '%claudebot%', '%ccbot%', '%pinterestbot%', '%amazonbot%', '%crawler%', '%spider%',
               '%bot/%', '%+http%']) }}
{%- endmacro %}

{#- Headless browsers, automation frameworks, HTTP libraries and command-line clients. A bare okhttp UA is a
    script; an app that embeds okhttp announces itself first ('MyApp/1.0 okhttp/4.9'), so only a leading okhttp
    counts. -#}
{% macro automation_client_patterns() -%}
    {{ return(['%headlesschrome%', '%headless%', '%phantomjs%', '%selenium%', '%webdriver%', '%puppeteer%',
               '%playwright%', '%python-requests%', '%python-urllib%', '%python-httpx%', '%aiohttp%', '%scrapy%',
               'curl/%', 'wget/%', '%go-http-client%', 'okhttp%', 'java/%', '%apache-httpclient%',
               '%libwww-perl%', '%node-fetch%', 'axios/%', '%postmanruntime%', 'httpie/%', '%guzzlehttp%',
               '%chrome-lighthouse%']) }}
{%- endmacro %}

{#- ua_bot_reason(ua) -> 'empty_user_agent' | 'link_preview' | 'declared_crawler' | 'automation_client' | null. -#}
{% macro ua_bot_reason(ua) -%}
    case
        when {{ ua }} is null then 'empty_user_agent'
        when {{ link_attribution.like_any(ua, link_attribution.link_preview_patterns()) }} then 'link_preview'
        when {{ link_attribution.like_any(ua, link_attribution.declared_crawler_patterns()) }} then 'declared_crawler'
        when {{ link_attribution.like_any(ua, link_attribution.automation_client_patterns()) }} then 'automation_client'
    end
{%- endmacro %}

{#- ua_device_family(ua, ua_bot_reason) -> 'bot' | 'tablet' | 'mobile' | 'desktop' | 'unknown'.
    Tablets before phones: an iPad or an Android UA without 'mobile' is a tablet. -#}
{% macro ua_device_family(ua, bot_reason) -%}
    case
        when {{ bot_reason }} in ('link_preview', 'declared_crawler', 'automation_client') then 'bot'
        when {{ ua }} is null then 'unknown'
        when {{ link_attribution.like_any(ua, ['%ipad%', '%tablet%', '%kindle%', '%silk/%', '%playbook%']) }}
            or ({{ ua }} like '%android%' and {{ ua }} not like '%mobile%') then 'tablet'
        when {{ link_attribution.like_any(ua, ['%iphone%', '%ipod%', '%android%', '%mobile%', '%windows phone%',
                                               '%blackberry%', '%opera mini%']) }} then 'mobile'
        when {{ link_attribution.like_any(ua, ['%windows nt%', '%macintosh%', '%x11%', '% cros %', '%linux%']) }}
            then 'desktop'
        else 'unknown'
    end
{%- endmacro %}

{#- ua_os_family(ua) -> 'ios' | 'android' | 'windows' | 'chromeos' | 'macos' | 'linux' | 'other' | 'unknown'.
    iOS before macOS (iOS UAs say 'like Mac OS X'); Android before Linux. -#}
{% macro ua_os_family(ua) -%}
    case
        when {{ ua }} is null then 'unknown'
        when {{ link_attribution.like_any(ua, ['%iphone%', '%ipad%', '%ipod%']) }} then 'ios'
        when {{ ua }} like '%android%' then 'android'
        when {{ ua }} like '%windows%' then 'windows'
        when {{ ua }} like '% cros %' then 'chromeos'
        when {{ link_attribution.like_any(ua, ['%macintosh%', '%mac os x%']) }} then 'macos'
        when {{ link_attribution.like_any(ua, ['%linux%', '%x11%']) }} then 'linux'
        else 'other'
    end
{%- endmacro %}

{#- ua_browser(ua) -> 'edge' | 'opera' | 'samsung_internet' | 'firefox' | 'webview' | 'chrome' | 'safari' |
    'other' | 'unknown'. Chromium derivatives before Chrome, Chrome before Safari (Chrome says 'Safari/' too);
    'webview' is an app's embedded browser (Android '; wv)' or iOS WebKit without a Safari token). -#}
{% macro ua_browser(ua) -%}
    case
        when {{ ua }} is null then 'unknown'
        when {{ link_attribution.like_any(ua, ['%edg/%', '%edge/%', '%edga/%', '%edgios/%']) }} then 'edge'
        when {{ link_attribution.like_any(ua, ['%opr/%', '%opera%']) }} then 'opera'
        when {{ ua }} like '%samsungbrowser%' then 'samsung_internet'
        when {{ link_attribution.like_any(ua, ['%firefox/%', '%fxios/%']) }} then 'firefox'
        when {{ ua }} like '%; wv)%' then 'webview'
        when {{ link_attribution.like_any(ua, ['%chrome/%', '%crios/%', '%chromium/%']) }} then 'chrome'
        when {{ ua }} like '%safari/%' then 'safari'
        when {{ ua }} like '%applewebkit%' and {{ link_attribution.like_any(ua, ['%iphone%', '%ipad%', '%ipod%']) }}
            then 'webview'
        else 'other'
    end
{%- endmacro %}

{#- ua_in_app_browser(ua, bot_reason) -> the social app whose in-app browser opened the link: 'instagram' |
    'tiktok' | 'facebook' | 'youtube' | 'snapchat' | 'twitter' | 'linkedin' | 'pinterest' | null. Never set for a
    bot UA (Twitterbot, LinkedInBot and Pinterestbot name the same platforms). Instagram before Facebook: its UAs
    can carry Facebook's FBAV token. -#}
{% macro ua_in_app_browser(ua, bot_reason) -%}
    case
        when {{ bot_reason }} in ('link_preview', 'declared_crawler', 'automation_client') then null
        when {{ ua }} like '%instagram%' then 'instagram'
        when {{ link_attribution.like_any(ua, ['%musical_ly%', '%bytedancewebview%', '%tiktok%']) }} then 'tiktok'
        when {{ link_attribution.like_any(ua, ['%fban/%', '%fbav/%', '%fb_iab%', '%fbios%', '%[fb%']) }}
            then 'facebook'
        when {{ ua }} like '%youtube%' then 'youtube'
        when {{ ua }} like '%snapchat%' then 'snapchat'
        when {{ ua }} like '%twitter%' then 'twitter'
        when {{ ua }} like '%linkedin%' then 'linkedin'
        when {{ ua }} like '%pinterest%' then 'pinterest'
    end
{%- endmacro %}
