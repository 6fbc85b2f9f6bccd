"""try/except/else/finally inside loops, exceptions crossing job calls."""


class Odd(ValueError):
    pass


def check(x):
    for i in range(x % 4):
        if i == 2:
            raise KeyError(x)
    if x % 2:
        raise Odd("odd %d" % x)
    return x // 2


def run(values):
    log = []
    cleanups = 0
    for v in values:
        try:
            half = check(v)
            log.append(("ok", half))
        except Odd as e:
            log.append(("odd", str(e)))
            continue
        except KeyError:
            log.append(("key", v))
        else:
            log.append(("else", v))
        finally:
            cleanups += 1
        try:
            try:
                if v == 7:
                    break
                log.append(check(v + 1))
            finally:
                cleanups += 10
        except:  # noqa: E722 - a bare except must not swallow a freeze
            log.append("bare")
    return log, cleanups
