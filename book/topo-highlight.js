// Syntax highlighting for ```topo blocks.
//
// highlight.js, which mdBook bundles, does not know the statflow topology
// language, so book.js leaves those blocks plain. This script runs after
// book.js (mdBook loads `additional-js` last): it registers the language
// and highlights the `topo` blocks again. No other file is fetched.
(function () {
    'use strict';
    if (typeof hljs === 'undefined') {
        return;
    }
    var UNIT = '(?:ms|s|m|h|d|w)';
    hljs.registerLanguage('topo', function (hljs) {
        return {
            name: 'statflow topology',
            keywords: {
                keyword: 'source metric from where dimensions window retain measures fields ' +
                    'as every by tumbling hopping session and or not in exists missing',
                built_in: 'kafka file generator count sum min max avg distinct quantile ' +
                    'string number bool time json epoch_millis epoch_seconds rfc3339 earliest latest',
                literal: 'true false'
            },
            contains: [
                hljs.HASH_COMMENT_MODE,
                hljs.C_LINE_COMMENT_MODE,
                {
                    className: 'string',
                    begin: '"',
                    end: '"',
                    illegal: '\\n',
                    contains: [hljs.BACKSLASH_ESCAPE]
                },
                // A backquoted name: a field, not a keyword.
                { begin: '`', end: '`', illegal: '\\n' },
                {
                    // Numbers (42, 0.99, 1e6, 1_000) and durations (5m, 1h30m).
                    className: 'number',
                    begin: '\\b\\d[\\d_]*(?:(?:\\.\\d+)?(?:[eE][+-]?\\d+)?|(?:' + UNIT + '\\d[\\d_]*)*' + UNIT + ')\\b',
                    relevance: 0
                }
            ]
        };
    });
    document.querySelectorAll('code.language-topo').forEach(function (block) {
        hljs.highlightBlock(block);
    });
})();
