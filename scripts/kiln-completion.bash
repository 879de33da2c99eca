# bash completion for kiln (the command-line client of kiln).
# Use: source scripts/kiln-completion.bash, or copy it to
# /etc/bash_completion.d/kiln. Function names are completed from
# `kiln list --json` when a gateway answers (quietly otherwise).

_kiln_functions()
{
	local gw=()
	[[ -n "$_kiln_gateway" ]] && gw=(--gateway "$_kiln_gateway")
	kiln "${gw[@]}" list --json 2>/dev/null |
		sed -n 's/^ *"name": "\([a-z0-9_-]*\)",\{0,1\}$/\1/p'
}

_kiln()
{
	local cur prev words cword
	if declare -F _init_completion >/dev/null; then
		_init_completion || return
	else
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD - 1]}
		words=("${COMP_WORDS[@]}")
		cword=$COMP_CWORD
	fi

	local commands="deploy invoke list describe remove logs calls new up run help"
	local global="--gateway --verbose --help --version"
	local cmd="" i _kiln_gateway=""
	for ((i = 1; i < cword; i++)); do
		case "${words[i]}" in
		-g | --gateway)
			_kiln_gateway=${words[i + 1]}
			((i++))
			;;
		--gateway=*) _kiln_gateway=${words[i]#--gateway=} ;;
		-*) ;;
		*)
			if [[ -z "$cmd" ]]; then
				cmd=${words[i]}
			fi
			;;
		esac
	done

	case "$prev" in
	-g | --gateway | --callback | -X | --method | --path | -H | --header | --query | \
		-d | --data | --handler | -e | --env | -m | --memory | --vcpus | -t | --timeout | \
		--concurrency | --queue-timeout | --min | --max | --keep-alive | --dns | \
		--dns-search | --since | -n | --tail | --filter)
		return
		;;
	-r | --runtime | --lang)
		COMPREPLY=($(compgen -W "python sh" -- "$cur"))
		return
		;;
	--mode)
		COMPREPLY=($(compgen -W "server exec" -- "$cur"))
		return
		;;
	--network)
		COMPREPLY=($(compgen -W "none egress" -- "$cur"))
		return
		;;
	-c | --code | --code-path | --data-file)
		if [[ "$cmd" == run ]]; then
			COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur") $(compgen -d -- "$cur"))
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		return
		;;
	--config-path)
		COMPREPLY=($(compgen -f -X '!*.toml' -- "$cur") $(compgen -d -- "$cur"))
		return
		;;
	-f | --file | --yaml)
		if [[ "$cmd" == logs ]]; then
			:
		else
			COMPREPLY=($(compgen -f -X '!*.y*ml' -- "$cur") $(compgen -d -- "$cur"))
			return
		fi
		;;
	esac

	if [[ -z "$cmd" ]]; then
		if [[ "$cur" == -* ]]; then
			COMPREPLY=($(compgen -W "$global" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		fi
		return
	fi

	local opts=""
	case "$cmd" in
	deploy)
		opts="--runtime --handler --mode --code --code-path --env --memory --vcpus
		      --timeout --concurrency --queue-timeout --min --max --keep-alive --network
		      --dns --dns-search --quiet --json --gateway --help"
		;;
	invoke)
		opts="--data --data-file --header --query --method --path --async --callback
		      --verbose --gateway --help"
		;;
	list) opts="--json --gateway --help" ;;
	describe) opts="--json --gateway --help" ;;
	remove) opts="--gateway --help" ;;
	logs) opts="--follow --since --tail --json --gateway --help" ;;
	calls) opts="--wait --json --gateway --help" ;;
	new) opts="--runtime --file --gateway --help" ;;
	up) opts="--file --filter --quiet --gateway --help" ;;
	run) opts="--config-path --rm --timeout --quiet --gateway --help" ;;
	help)
		COMPREPLY=($(compgen -W "$commands" -- "$cur"))
		return
		;;
	esac
	if [[ "$cur" == -* ]]; then
		COMPREPLY=($(compgen -W "$opts" -- "$cur"))
		return
	fi
	case "$cmd" in
	invoke | describe | remove | logs | deploy)
		COMPREPLY=($(compgen -W "$(_kiln_functions)" -- "$cur"))
		;;
	esac
}

complete -F _kiln kiln
