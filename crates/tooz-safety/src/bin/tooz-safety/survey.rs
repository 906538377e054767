//! What the servers say at the end of a run, before the clients stop: the holder of each
//! lock as every server of the URL sees it (a multi-host ZooKeeper URL is asked host by
//! host). Saved as `holders.txt`, it names whoever blocks a lock that stopped changing hands.

use std::time::Duration;

use tooz::Coordinator;

use crate::runner::redacted;

/// Longest a survey of one server may take.
const SURVEY_TIMEOUT: Duration = Duration::from_secs(5);

/// One line per server and lock: `URL<TAB>lock<TAB>holder` (`-` for none, or the error).
pub async fn holders(url: &str, locks: &[String]) -> String {
    let mut text = String::new();
    for server in per_server(url) {
        let answers = tokio::time::timeout(SURVEY_TIMEOUT, ask(&server, locks)).await;
        let answers = answers.unwrap_or_else(|_| vec!["timed out".into(); locks.len()]);
        for (lock, answer) in locks.iter().zip(answers) {
            text += &format!("{}\t{lock}\t{answer}\n", redacted(&server));
        }
    }
    text
}

async fn ask(url: &str, locks: &[String]) -> Vec<String> {
    let coord = match Coordinator::connect(url, "safety-survey").await {
        Ok(coord) => coord,
        Err(error) => return vec![error.to_string(); locks.len()],
    };
    if let Err(error) = coord.start().await {
        return vec![error.to_string(); locks.len()];
    }
    let mut answers = Vec::new();
    for lock in locks {
        answers.push(match coord.lock(lock.as_str()).holder().await {
            Ok(Some(member)) => member.to_string(),
            Ok(None) => "-".into(),
            Err(error) => error.to_string(),
        });
    }
    let _ = coord.stop().await;
    answers
}

/// The URL once per server it names: a ZooKeeper URL's hosts one at a time, else as is.
fn per_server(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return vec![url.to_string()];
    };
    if !matches!(scheme, "zookeeper" | "kazoo") {
        return vec![url.to_string()];
    }
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
        None => (String::new(), authority),
    };
    let mut urls: Vec<String> = hosts
        .split(',')
        .map(|host| format!("{scheme}://{userinfo}{host}{tail}"))
        .collect();
    if urls.len() > 1 {
        urls.insert(0, url.to_string());
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::per_server;

    #[test]
    fn a_zookeeper_ensemble_is_asked_host_by_host() {
        assert_eq!(
            per_server("zookeeper://u:p@a:1,b:2/chroot?timeout=2"),
            [
                "zookeeper://u:p@a:1,b:2/chroot?timeout=2",
                "zookeeper://u:p@a:1/chroot?timeout=2",
                "zookeeper://u:p@b:2/chroot?timeout=2",
            ]
        );
        assert_eq!(per_server("redis://h:6379?x=1"), ["redis://h:6379?x=1"]);
        assert_eq!(per_server("zookeeper://h:1"), ["zookeeper://h:1"]);
    }
}
