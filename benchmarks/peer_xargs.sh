#!/bin/sh
# Peer (b): the shell route. split the file into chunks of 2000 lines, then
# xargs -P 8 runs one awk | curl per chunk. awk builds the JSON body without
# escaping: fine for plain handles ([A-Za-z0-9_]), which is all the benchmark sends.
#
#   INBOX_BASE_URL=... INBOX_API_TOKEN=... sh peer_xargs.sh CAMPAIGN FILE WORKDIR
# prints one HTTP status code per request.
set -eu
campaign=$1
input=$2
workdir=$3
export campaign

split -l 2000 -d -a 5 "$input" "$workdir/chunk."
ls "$workdir"/chunk.* | xargs -n 1 -P 8 sh -c '
  awk '\''BEGIN { printf "{\"platform\":\"twitter\",\"usernames\":[" }
       NR > 1 { printf "," }
       { printf "\"%s\"", $0 }
       END { printf "]}" }'\'' "$1" |
  curl -sS -o /dev/null -w "%{http_code}\n" -X POST \
    -H "Authorization: Bearer $INBOX_API_TOKEN" -H "Content-Type: application/json" \
    --data-binary @- "$INBOX_BASE_URL/campaigns/v2/$campaign/leads"
' sh
